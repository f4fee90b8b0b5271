"""Tests of the network building blocks: padding, windows, Swin V2 attention, conv blocks."""

import functools
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax.models import padding
from fusionjax.models import swin
from fusionjax.models.blocks import ConvNeXtBlock, ResidualBlock
from fusionjax.models.glt import GLT
from fusionjax.models.msmg import MSMG, upsample_bilinear

# Tests compile with LLVM's optimisations off: about half the compile time on CPU, and the
# workloads here are too small for the slower code to matter.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture
def rng():
  """A fresh generator per test; the seed is printed so a failure can be replayed."""
  seed = int.from_bytes(os.urandom(4), "little")
  print(f"numpy seed: {seed}")
  return np.random.default_rng(seed)


def _random_params(rng, module, *args, scale=0.3):
  """Parameters of ``module`` drawn at random (shapes from ``eval_shape``: no compilation)."""
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
  return jax.tree_util.tree_map(
    lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes
  )


# --- padding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "shape,multiple", [((1, 7, 5, 1), 8), ((2, 37, 53, 3), 8), ((1, 1, 2, 1), 4), ((1, 16, 24, 2), 8)]
)
def test_pad_to_multiple_and_crop_round_trip(rng, shape, multiple):
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  padded = padding.pad_to_multiple(x, multiple)
  assert padded.shape[1] % multiple == 0 and padded.shape[2] % multiple == 0
  assert padded.shape[1] - shape[1] < multiple and padded.shape[2] - shape[2] < multiple
  np.testing.assert_array_equal(padding.crop_to(padded, shape[1], shape[2]), x)
  # Reflection: every padded value is a value of the image (no zeros are introduced).
  assert np.isin(np.asarray(padded), np.asarray(x)).all()


def test_pad_reflects_bottom_right_only():
  x = jnp.arange(15.0).reshape(1, 3, 5, 1)
  padded = padding.pad_to_multiple(x, 4)
  np.testing.assert_array_equal(padded[0, :3, :5, 0], x[0, :, :, 0])
  np.testing.assert_array_equal(padded[0, 3, :5, 0], x[0, 1, :, 0])  # Row 3 reflects row 1.
  np.testing.assert_array_equal(padded[0, :3, 5, 0], x[0, :, 3, 0])  # Column 5 reflects 3.


def test_required_multiple():
  assert padding.required_multiple((2, 4), (1, 2, 4, 8)) == 8
  assert padding.required_multiple((3,), (2,)) == 6
  assert padding.required_multiple(()) == 1
  with pytest.raises(ValueError, match="positive"):
    padding.required_multiple((0,))


def test_padding_errors():
  with pytest.raises(ValueError, match="NHWC"):
    padding.pad_to_multiple(jnp.zeros((3, 4)), 2)
  with pytest.raises(ValueError, match="smaller"):
    padding.crop_to(jnp.zeros((1, 2, 2, 1)), 3, 2)


# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w,window", [(37, 53, 4), (7, 5, 2), (13, 6, 4), (5, 11, 1)])
def test_window_partition_merge_round_trip(rng, h, w, window):
  x = jnp.asarray(rng.standard_normal((2, h, w, 3)), jnp.float32)
  padded = padding.pad_to_multiple(x, window)
  hp, wp = padded.shape[1:3]
  windows = swin.window_partition(padded, window)
  assert windows.shape == (2 * (hp // window) * (wp // window), window * window, 3)
  # Window k of image b holds rows/cols of window (k // nW, k % nW), row-major inside.
  n_w = wp // window
  k = rng.integers(hp // window * n_w)
  r, c = divmod(int(k), n_w)
  expected = padded[1, r * window : (r + 1) * window, c * window : (c + 1) * window].reshape(-1, 3)
  np.testing.assert_array_equal(windows[(hp // window) * n_w + k], expected)
  merged = swin.window_merge(windows, window, hp, wp)
  np.testing.assert_array_equal(padding.crop_to(merged, h, w), x)


def test_window_partition_rejects_unpadded():
  with pytest.raises(ValueError, match="divisible"):
    swin.window_partition(jnp.zeros((1, 7, 8, 1)), 4)
  with pytest.raises(ValueError, match="tile"):
    swin.window_merge(jnp.zeros((3, 16, 1)), 4, 8, 8)


def _reference_mask(h, w, window, sh, sw):
  """Allowed pairs by definition: two tokens of a rolled window may attend iff the cyclic roll
  did not separate them, i.e. their offset in the rolled image equals their original offset."""
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  orig_r, orig_c = (rows + sh) % h, (cols + sw) % w  # Original position of each rolled pixel.
  n_h, n_w = h // window, w // window
  out = np.zeros((n_h * n_w, window * window, window * window), bool)
  for i in range(n_h):
    for j in range(n_w):
      sl = (slice(i * window, (i + 1) * window), slice(j * window, (j + 1) * window))
      rr, cc = rows[sl].ravel(), cols[sl].ravel()
      orr, occ = orig_r[sl].ravel(), orig_c[sl].ravel()
      out[i * n_w + j] = ((rr[:, None] - rr[None, :]) == (orr[:, None] - orr[None, :])) & (
        (cc[:, None] - cc[None, :]) == (occ[:, None] - occ[None, :])
      )
  return out


@pytest.mark.parametrize(
  "h,w,window,sh,sw",
  [(8, 12, 4, 2, 2), (6, 10, 2, 1, 1), (12, 8, 4, 2, 0), (16, 24, 8, 4, 4), (8, 8, 4, 0, 0)],
)
def test_shifted_window_mask_matches_definition(h, w, window, sh, sw):
  mask = swin.shifted_window_mask(h, w, window, sh, sw)
  np.testing.assert_array_equal(mask, _reference_mask(h, w, window, sh, sw))
  if sh or sw:
    assert not mask.all()  # The wrap-around windows do separate tokens.


def test_shifted_window_mask_errors():
  with pytest.raises(ValueError, match="shift_h"):
    swin.shifted_window_mask(8, 8, 4, 4, 0)


def test_relative_position_tables():
  index = swin.relative_position_index(2)
  # Tokens (0,0),(0,1),(1,0),(1,1): offset (0,0) is entry 4 of the 3x3 table.
  assert np.all(np.diag(index) == 4)
  assert index[0, 3] == 0 and index[3, 0] == 8 and index[1, 2] == 2
  table = swin.relative_coords_table(2)
  assert table.shape == (9, 2)
  edge = math.log2(9.0) / 3.0  # Offset 1 normalised by w - 1 = 1, times 8, log-spaced.
  np.testing.assert_allclose(table[0], [-edge, -edge], rtol=1e-6)
  np.testing.assert_allclose(table[4], [0.0, 0.0])
  np.testing.assert_allclose(swin.relative_coords_table(1), [[0.0, 0.0]])


# --- window attention against a float64 reference ----------------------------------------------


def _attention_reference(params, x, mask, heads, window):
  """Swin V2 window attention in float64 numpy, written from the paper's equations."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(x, np.float64)
  n, t, c = x.shape
  d = c // heads
  qkv = x @ p["qkv"]["kernel"]
  q = qkv[..., :c] + p["q_bias"]
  k = qkv[..., c : 2 * c]
  v = qkv[..., 2 * c :] + p["v_bias"]
  split = lambda a: a.reshape(n, t, heads, d).transpose(0, 2, 1, 3)
  q, k, v = split(q), split(k), split(v)
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  k /= np.linalg.norm(k, axis=-1, keepdims=True)
  scale = np.exp(np.minimum(p["logit_scale"], np.log(100.0)))
  logits = np.einsum("nhtd,nhsd->nhts", q, k) * scale
  hidden = np.maximum(
    swin.relative_coords_table(window) @ p["cpb_fc1"]["kernel"] + p["cpb_fc1"]["bias"], 0.0
  )
  table = hidden @ p["cpb_fc2"]["kernel"]
  bias = table[swin.relative_position_index(window).ravel()].reshape(t, t, heads)
  logits = logits + 16.0 / (1.0 + np.exp(-bias.transpose(2, 0, 1)))
  if mask is not None:
    n_w = mask.shape[0]
    logits = np.where(np.tile(mask, (n // n_w, 1, 1))[:, None], logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("nhts,nhsd->nhtd", weights, v).transpose(0, 2, 1, 3).reshape(n, t, c)
  return out @ p["proj"]["kernel"] + p["proj"]["bias"]


def test_window_attention_matches_float64_reference(rng):
  window, heads, dim = 4, 2, 8
  h, w = 8, 12
  attn = swin.WindowAttention(dim, heads, window, cpb_hidden=16)
  n = 2 * (h // window) * (w // window)
  x = jnp.asarray(rng.standard_normal((n, window * window, dim)), jnp.float32)
  mask = swin.shifted_window_mask(h, w, window, 2, 2)
  # Random biases and scales (not the zero/constant initial ones): every term is exercised.
  params = _random_params(rng, attn, x)["params"]
  params["logit_scale"] = params["logit_scale"] + math.log(10.0)
  both = _jit(lambda p, a: (attn.apply({"params": p}, a, mask), attn.apply({"params": p}, a)))
  masked, unmasked = both(params, x)
  np.testing.assert_allclose(
    masked, _attention_reference(params, x, mask, heads, window), rtol=2e-4, atol=2e-5
  )
  np.testing.assert_allclose(
    unmasked, _attention_reference(params, x, None, heads, window), rtol=2e-4, atol=2e-5
  )


def test_window_attention_rejects_bad_heads():
  attn = swin.WindowAttention(8, 3, 2)
  with pytest.raises(ValueError, match="divide"):
    attn.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 8)))


# --- Swin block: behaviour of the shifted windows ----------------------------------------------


def _reachable(h, w, window, sh, sw, pixel):
  """Pixels whose attention output may depend on ``pixel`` in one shifted-window layer."""
  r0, c0 = pixel
  rr, cc = (r0 - sh) % h, (c0 - sw) % w  # Where the pixel sits in the rolled image.
  mask = _reference_mask(h, w, window, sh, sw)
  n_w = w // window
  k = (rr // window) * n_w + cc // window
  t = (rr % window) * window + cc % window
  out = np.zeros((h, w), bool)
  for s in np.flatnonzero(mask[k][:, t]):  # Queries in the window that may see token t.
    qr = (rr // window) * window + s // window
    qc = (cc // window) * window + s % window
    out[(qr + sh) % h, (qc + sw) % w] = True
  return out


def test_shifted_swin_block_never_attends_across_the_wrap(rng):
  h, w, window, dim = 12, 20, 4, 8
  # Corners and edges of the wrap-around windows, and an interior pixel.
  pixels = [(0, 0), (11, 19), (1, 9), (6, 18), (5, 5)]
  block = swin.SwinBlock(dim, 2, window, shift=True, cpb_hidden=16)
  x = jnp.asarray(rng.standard_normal((1, h, w, dim)), jnp.float32)
  params = _random_params(rng, block, x)
  # One batch: the image, then one copy per perturbed pixel (the block treats images apart).
  batch = jnp.concatenate([x] + [x.at[0, r, c].add(3.0) for r, c in pixels])
  out = np.asarray(_jit(block.apply)(params, batch))
  assert block.shifts(h, w) == (2, 2)
  for i, pixel in enumerate(pixels):
    changed = np.abs(out[i + 1] - out[0]).max(-1) > 1e-5
    reach = _reachable(h, w, window, window // 2, window // 2, pixel)
    assert not (changed & ~reach).any(), (pixel, np.argwhere(changed & ~reach))
    assert changed[pixel] and changed.sum() > 1  # The perturbation does spread in its region.
    if pixel == (0, 0):
      assert reach.sum() < window * window  # The wrapped window is split: the test has teeth.


def test_swin_block_shift_only_where_it_moves_information():
  block = swin.SwinBlock(8, 2, 4, shift=True)
  assert block.shifts(4, 12) == (0, 2)
  assert swin.SwinBlock(8, 2, 4, shift=False).shifts(8, 8) == (0, 0)


def test_swin_block_pads_odd_sizes(rng):
  shape = (2, 7, 13, 8)
  block = swin.SwinBlock(8, 2, 4, shift=True, cpb_hidden=16)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  padded = padding.pad_to_multiple(x, 4)
  params = _random_params(rng, block, x)
  run = _jit(lambda p, a, b: (block.apply(p, a), block.apply(p, b)))
  out, out_padded = run(params, x, padded)
  assert out.shape == shape and np.isfinite(out).all()
  # Equals the block applied to the reflect-padded image, cropped back.
  np.testing.assert_allclose(out, out_padded[:, : shape[1], : shape[2]], rtol=1e-5, atol=1e-5)


# --- convolutional blocks ----------------------------------------------------------------------


def test_residual_block_matches_definition(rng):
  x = jnp.asarray(rng.standard_normal((2, 9, 6, 4)), jnp.float32)
  block = ResidualBlock(4)
  with jax.threefry_partitionable(False):  # Compiles ~10x faster on CPU.
    params = _jit(block.init)(jax.random.PRNGKey(1), x)
  conv = lambda p, a: (
    jax.lax.conv_general_dilated(
      a, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    + p["bias"]
  )
  p = params["params"]
  expected = x + conv(p["conv2"], nn.relu(conv(p["conv1"], x)))
  np.testing.assert_allclose(_jit(block.apply)(params, x), expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="channels"):
    block.init(jax.random.PRNGKey(1), x[..., :3])


def test_convnext_block_starts_near_identity_and_mixes_space(rng):
  x = jnp.asarray(rng.standard_normal((1, 10, 7, 4)), jnp.float32)
  block = ConvNeXtBlock(4)
  with jax.threefry_partitionable(False):  # Compiles ~10x faster on CPU.
    params = _jit(block.init)(jax.random.PRNGKey(2), x)
  apply = _jit(block.apply)
  np.testing.assert_allclose(apply(params, x), x, atol=1e-4)  # Layer scale 1e-6.
  params = jax.tree_util.tree_map(lambda a: a, params)
  params["params"]["layer_scale"] = jnp.ones(4)
  base = apply(params, x)
  poked = apply(params, x.at[0, 5, 3].add(1.0))
  changed = np.abs(np.asarray(poked - base)).max(-1)[0] > 1e-6
  # The 7x7 depthwise kernel reaches exactly 3 pixels each way.
  expected = np.zeros((10, 7), bool)
  expected[2:9, 0:7] = True
  np.testing.assert_array_equal(changed, expected)


def test_upsample_bilinear_matches_jax_image_resize(rng):
  x = jnp.asarray(rng.standard_normal((2, 3, 5, 4)), jnp.float32)
  for factor in (1, 2, 3, 8):
    expected = _jit(jax.image.resize, static_argnums=(1, 2))(
      x, (2, 3 * factor, 5 * factor, 4), "bilinear"
    )
    got = _jit(upsample_bilinear, static_argnums=1)(x, factor)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_glt_and_msmg_shapes(rng):
  x = jnp.asarray(rng.standard_normal((1, 13, 21, 4)), jnp.float32)
  glt = GLT(4, depth=2, num_heads=1, window=2, cpb_hidden=8)
  out = jax.eval_shape(glt.apply, jax.eval_shape(glt.init, jax.random.PRNGKey(0), x), x)
  assert out.shape == (1, 13, 21, 4)
  msmg = MSMG(4, num_heads=1, cpb_hidden=8, depth=2)
  m0 = jnp.asarray(rng.random((1, 13, 21, 1)), jnp.float32)
  mask = _jit(msmg.apply)(_random_params(rng, msmg, x, m0), x, m0)
  assert mask.shape == (1, 13, 21, 1) and mask.dtype == jnp.float32
  assert (mask > 0).all() and (mask < 1).all()
  with pytest.raises(ValueError, match="mask"):
    jax.eval_shape(msmg.init, jax.random.PRNGKey(0), x, jnp.zeros((1, 13, 21, 2)))
