"""Inference: colour rules, sequences of sources, seamless tiling, compiled-function caching.

Models are tiny (width 8, one unfolding unit) and randomly initialised. Their parameters are drawn
with numpy from the shapes of ``jax.eval_shape(model.init)``: XLA compiles these networks' ``init``
in a minute or more on two CPU cores, while the forward pass compiles in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax import batch
from fusionjax import checkpoints
from fusionjax import color
from fusionjax import imageio
from fusionjax import inference
from fusionjax import models
from fusionjax import stages
from fusionjax import tiling
from fusionjax import weights
from fusionjax.data import sample_pairs
from fusionjax.evaluation import cost
from shared_data import SHARED_DATA

DATA_DIR = SHARED_DATA

#: One tiny architecture for all inference, CLI and evaluation tests, so they share compilations.
TINY_FRUFN = {"name": "frufn", "num_units": 1, "width": 8, "num_heads": 2, "cpb_hidden": 16}
TINY_EFRUFN = {"name": "efrufn", "width": 8, "num_heads": 2, "cpb_hidden": 16, "max_iter": 3}
TINY_COLORNET = {"features": 8, "num_blocks": 1}


def _fresh_seed() -> int:
  seed = int(np.random.default_rng().integers(2**31))
  print(f"seed={seed}")
  return seed


def random_params(module, input_shapes, seed: int):
  """Random parameters for ``module`` with the shapes its ``init`` would give.

  Kernels are N(0, 1/fan_in); biases 0; norm scales 1; Swin V2 logit scales log(10); layer scales 0.1.
  """
  rng = np.random.default_rng(seed)
  dummies = [jnp.zeros(s, jnp.float32) for s in input_shapes]
  shapes = jax.eval_shape(module.init, jax.random.key(0), *dummies)["params"]

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0.0, 1.0 / np.sqrt(fan_in), leaf.shape).astype(np.float32)
    if name == "scale":
      return np.ones(leaf.shape, np.float32)
    if name == "logit_scale":
      return np.full(leaf.shape, np.log(10.0), np.float32)
    if name in ("layer_scale", "transform_scale"):
      return np.full(leaf.shape, 0.1, np.float32)
    return np.zeros(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def tiny_fusion_model(config=None, *, task="ivf", seed=0, colornet=False) -> stages.FusionModel:
  """A FusionModel of a tiny, randomly initialised network (and ColorNet when asked)."""
  config = dict(config or TINY_FRUFN)
  model = models.create_model(config)
  params = random_params(model, [(1, 32, 32, 1)] * 2, seed)
  net = net_params = None
  if colornet:
    net = models.ColorNet(**TINY_COLORNET)
    net_params = random_params(net, [(1, 32, 32, 2), (1, 32, 32, 2), (1, 32, 32, 1)], seed + 1)
  return stages.FusionModel(
    task=task,
    model=model,
    params=params,
    colornet=net,
    colornet_params=net_params,
    metadata={"model": config},
    path=None,
    step=0,
  )


def save_tiny_checkpoint(
  workdir, *, task="ivf", config=None, seed=0, colornet=False, teacher=None, step=7
):
  """Saves a tiny random stage checkpoint through StageCheckpointer, as train.py would."""
  config = dict(config or TINY_FRUFN)
  fm = tiny_fusion_model(config, task=task, seed=seed, colornet=colornet)
  state = {
    "step": np.asarray(step),
    "params": fm.params,
    "opt_state": {"count": np.zeros((), np.int32)},
    "rng": np.zeros(2, np.uint32),
  }
  if colornet:
    state["colornet_params"] = fm.colornet_params
    state["colornet_opt_state"] = {"count": np.zeros((), np.int32)}
  metadata = {
    "format": checkpoints.FORMAT,
    "task": task,
    "model": config,
    "colornet": dict(TINY_COLORNET) if colornet else None,
    "config": {"seed": seed},
    "teacher": teacher,
    "workdir": str(workdir),
    "fusionjax_version": "test",
  }
  with checkpoints.StageCheckpointer(workdir) as ckpt:
    ckpt.save(step, state, metadata, force=True)
  return Path(workdir)


def real_pair(dataset="lytro", index=0):
  """The sources of a real benchmark pair (skips when the benchmark images are not present)."""
  from fusionjax import data

  if not DATA_DIR.is_dir():
    pytest.skip(f"benchmark images not found at {DATA_DIR} (set FUSIONJAX_DATA)")
  pair = data.list_pairs(dataset, DATA_DIR, validate=False)[index]
  return data.load_pair(pair).sources


@pytest.fixture(scope="module")
def frufn():
  return tiny_fusion_model(TINY_FRUFN, seed=_fresh_seed())


# ---------------------------------------------------------------------------------------------------
# Tiled networks (the tiling geometry itself: tests/test_tiling.py)


def _column_gradient_energy(image):
  return np.abs(np.diff(image[..., 0].astype(np.float64), axis=1)).mean(axis=0)


@pytest.mark.slow
def test_tiled_network_is_close_to_untiled_without_seams(frufn):
  # The unfolding unit scales the residual by its RMS over the whole image (UFUnit), so no tiling
  # reproduces FRUFN exactly: each tile normalises by its own RMS. The tiled result must stay close
  # and show no seams.
  sources = [s[:161, :229] for s in real_pair("lytro", 2)]  # odd, non-square crop of a real pair
  lumas = [color.split_luma_chroma(s)[0] for s in sources]
  whole = inference.fuse_luma(frufn, lumas).luma
  tiled_info = inference.fuse_luma(frufn, lumas, tile_size=96, tile_overlap=32)
  tiled = tiled_info.luma
  assert tiled_info.tiles == 3 * 4 and tiled.shape == whole.shape == (161, 229, 1)
  difference = np.abs(tiled - whole)
  print(f"tiled vs untiled: max |diff| {difference.max():.4g}, mean {difference.mean():.3g}")
  assert difference.max() < 0.2 and difference.mean() < 0.01
  # Seams: per column, the gradient energy of the tiled result relative to the untiled one. A seam
  # is a column where it jumps; in the cross-fade columns it must stay as it is elsewhere.
  grid = tiling.tile_grid(229, 96, 32, inference.network_align(frufn))
  assert grid.starts == (0, 64, 128, 192)
  fade = np.concatenate([np.arange(s + 8, s + 24) for s in grid.starts[1:]])
  fade = fade[fade < 228]
  others = np.setdiff1d(np.arange(228), fade)
  ratio = _column_gradient_energy(tiled) / _column_gradient_energy(whole)
  print(
    f"gradient energy tiled/untiled per column: cross-fade mean {ratio[fade].mean():.3f} max "
    f"{ratio[fade].max():.3f}; other columns mean {ratio[others].mean():.3f} max {ratio[others].max():.3f}"
  )
  assert 0.8 < ratio[fade].mean() < 1.2 and ratio[fade].max() < max(1.3, 1.1 * ratio[others].max())
  # Control: hard tile borders (no overlap) show as jumps at the cuts.
  hard = inference.fuse_luma(frufn, lumas, tile_size=96, tile_overlap=0).luma
  cuts = np.array([s - 1 for s in tiling.tile_grid(229, 96, 0, 8).starts[1:]])
  jumps = _column_gradient_energy(hard)[cuts] / _column_gradient_energy(whole)[cuts]
  print(
    f"hard cuts: gradient energy at the cuts / untiled {np.round(jumps, 2)}; max |diff| "
    f"{np.abs(hard - whole).max():.4g}"
  )
  # The weights are random per run (seen: 1.25 and 1.73 at the two cuts; the reflected border round
  # every tile keeps a cut from reading zeros), so the cuts are compared with the worst cross-fade
  # column of the blended result rather than with a fixed threshold.
  assert jumps.mean() > 1.15 * ratio[fade].max() and jumps.max() > 1.3
  # Next to the cuts the hard tiles are further from the untiled result than the blended ones. (Over the
  # whole image they need not be: every tile is fused with inference.BORDER reflected pixels round it.)
  near = np.concatenate([cuts - 1, cuts, cuts + 1, cuts + 2])
  assert np.abs(hard - whole)[:, near].mean() > difference[:, near].mean()


# ---------------------------------------------------------------------------------------------------
# Colour rules and sequences


# 95 x 89 pads to 96 x 96 (the tiny networks' multiple is 8), the tile shape of the tiling tests:
# one compilation serves both.
SIZE = (95, 89)


def _random_images(seed, shape=SIZE):
  rng = np.random.default_rng(seed)
  grey1 = rng.random(shape + (1,)).astype(np.float32)
  grey2 = rng.random(shape + (1,)).astype(np.float32)
  rgb1 = rng.random(shape + (3,)).astype(np.float32)
  rgb2 = rng.random(shape + (3,)).astype(np.float32)
  rgb3 = rng.random(shape + (3,)).astype(np.float32)
  return grey1, grey2, rgb1, rgb2, rgb3


def _expected_rgb(luma, chroma):
  return color.ycrcb_to_rgb(np.concatenate([luma, chroma], -1).astype(np.float64)).astype(
    np.float32
  )


def test_colour_rules(frufn):
  grey1, grey2, rgb1, rgb2, _ = _random_images(_fresh_seed())
  y = lambda image: color.split_luma_chroma(image)[0]
  c = lambda image: color.split_luma_chroma(image)[1]

  both_grey = inference.fuse_images(frufn, [grey1, grey2])
  assert both_grey.shape == SIZE + (1,)
  np.testing.assert_allclose(both_grey, inference.fuse_luma(frufn, [grey1, grey2]).luma, atol=1e-6)

  # Colour + grey: the colour source's chroma, whichever position it takes.
  for images, colour in (([rgb1, grey2], rgb1), ([grey1, rgb2], rgb2)):
    fused = inference.fuse_images(frufn, images)
    luma = inference.fuse_luma(frufn, [y(i) for i in images]).luma
    assert fused.shape == SIZE + (3,)
    np.testing.assert_allclose(fused, _expected_rgb(luma, c(colour)), atol=1e-5)

  # Colour + colour: the weighted-average chroma rule.
  fused = inference.fuse_images(frufn, [rgb1, rgb2])
  luma = inference.fuse_luma(frufn, [y(rgb1), y(rgb2)]).luma
  np.testing.assert_allclose(
    fused, _expected_rgb(luma, color.fuse_chroma(c(rgb1), c(rgb2))), atol=1e-5
  )

  grey_only = inference.fuse_images(frufn, [rgb1, rgb2], grey=True)
  np.testing.assert_allclose(grey_only, luma, atol=1e-6)


def test_three_sources_fuse_sequentially(frufn):
  grey1, _, rgb1, rgb2, rgb3 = _random_images(_fresh_seed())
  y = lambda image: color.split_luma_chroma(image)[0]
  c = lambda image: color.split_luma_chroma(image)[1]
  fused = inference.fuse_images(frufn, [rgb1, rgb2, rgb3])
  first = inference.fuse_luma(frufn, [y(rgb1), y(rgb2)]).luma
  luma = inference.fuse_luma(frufn, [first, y(rgb3)]).luma
  np.testing.assert_allclose(
    fused, _expected_rgb(luma, color.fuse_chroma_many([c(rgb1), c(rgb2), c(rgb3)])), atol=1e-5
  )
  # The order matters (the network is not symmetric), as documented.
  other = inference.fuse_luma(frufn, [y(rgb3), y(rgb2), y(rgb1)]).luma
  assert np.abs(other - luma).max() > 1e-3
  # A grey source among colour ones contributes no chroma.
  mixed = inference.fuse_images(frufn, [rgb1, grey1, rgb3])
  mixed_luma = inference.fuse_luma(frufn, [y(rgb1), grey1, y(rgb3)]).luma
  np.testing.assert_allclose(
    mixed, _expected_rgb(mixed_luma, color.fuse_chroma(c(rgb1), c(rgb3))), atol=1e-5
  )


def test_adjacent_rule_averages_neighbouring_pairs(frufn):
  grey1, grey2, rgb1, rgb2, rgb3 = _random_images(_fresh_seed())
  y = lambda image: color.split_luma_chroma(image)[0]
  c = lambda image: color.split_luma_chroma(image)[1]
  assert frufn.task != "meif" and inference.default_sequence_rule(frufn.task) == "chain"
  assert inference.default_sequence_rule("meif") == "adjacent"
  images = [rgb1, rgb2, rgb3, grey1]
  pairs = [inference.fuse_luma(frufn, [y(a), y(b)]).luma for a, b in zip(images, images[1:])]
  info = inference.fuse_luma(frufn, [y(i) for i in images], sequence="adjacent")
  np.testing.assert_allclose(info.luma, np.mean(pairs, axis=0), atol=1e-6)
  assert len(info.steps) == 3
  for step, pair in zip(info.steps, pairs):
    np.testing.assert_allclose(step, pair, atol=1e-6)
  chain = inference.fuse_luma(frufn, [y(i) for i in images]).luma
  assert np.abs(chain - info.luma).max() > 1e-3
  fused = inference.fuse_images(frufn, images, sequence="adjacent")
  expected_chroma = color.fuse_chroma_many([c(rgb1), c(rgb2), c(rgb3)])
  np.testing.assert_allclose(fused, _expected_rgb(info.luma, expected_chroma), atol=1e-5)
  # Two sources: every rule is the pairwise fusion.
  for rule in inference.SEQUENCE_RULES:
    two = inference.fuse_luma(frufn, [grey1, grey2], sequence=rule).luma
    np.testing.assert_array_equal(two, inference.fuse_luma(frufn, [grey1, grey2]).luma)
  with pytest.raises(ValueError, match="sequence rule must be one of chain, adjacent"):
    inference.fuse_images(frufn, images, sequence="tree")


def test_colornet_is_used_for_two_colour_sources_only():
  seed = _fresh_seed()
  fm = tiny_fusion_model(TINY_FRUFN, task="meif", seed=seed, colornet=True)
  grey1, _, rgb1, rgb2, _ = _random_images(seed)
  y = lambda image: color.split_luma_chroma(image)[0]
  c = lambda image: color.split_luma_chroma(image)[1]
  luma = inference.fuse_luma(fm, [y(rgb1), y(rgb2)]).luma
  # The compiled ColorNet (eager Flax would compile every operation separately) on the sources'
  # chroma and the fused luma, in that order.
  colornet = inference._compiled(fm).colornet  # pylint: disable=protected-access
  chroma = np.asarray(
    colornet({"params": fm.colornet_params}, c(rgb1)[None], c(rgb2)[None], luma[None])[0]
  )
  np.testing.assert_allclose(
    inference.fuse_images(fm, [rgb1, rgb2]), _expected_rgb(luma, chroma), atol=1e-5
  )
  rule = inference.fuse_images(fm, [rgb1, rgb2], use_colornet=False)
  np.testing.assert_allclose(
    rule, _expected_rgb(luma, color.fuse_chroma(c(rgb1), c(rgb2))), atol=1e-5
  )
  assert np.abs(rule - inference.fuse_images(fm, [rgb1, rgb2])).max() > 1e-4
  # Three colour sources along a chain: ColorNet on the same pairs, each with the fused luma so far.
  rgb3 = _random_images(seed + 1)[2]
  luma3 = inference.fuse_luma(fm, [luma, y(rgb3)]).luma
  chroma3 = np.asarray(
    colornet({"params": fm.colornet_params}, chroma[None], c(rgb3)[None], luma3[None])[0]
  )
  np.testing.assert_allclose(
    inference.fuse_images(fm, [rgb1, rgb2, rgb3], sequence="chain"),
    _expected_rgb(luma3, chroma3),
    atol=1e-5,
  )
  # The multi-exposure default, 'adjacent': ColorNet per neighbouring pair with that pair's luma,
  # luma and chroma averaged over the pairs.
  luma23 = inference.fuse_luma(fm, [y(rgb2), y(rgb3)]).luma
  chroma23 = np.asarray(
    colornet({"params": fm.colornet_params}, c(rgb2)[None], c(rgb3)[None], luma23[None])[0]
  )
  np.testing.assert_allclose(
    inference.fuse_images(fm, [rgb1, rgb2, rgb3]),
    _expected_rgb((luma + luma23) / 2, (chroma + chroma23) / 2),
    atol=1e-5,
  )
  # One colour source: its own chroma, ColorNet or not.
  mixed = inference.fuse_images(fm, [rgb1, grey1])
  np.testing.assert_allclose(
    mixed, _expected_rgb(inference.fuse_luma(fm, [y(rgb1), grey1]).luma, c(rgb1)), atol=1e-5
  )


def test_bad_inputs_are_named(frufn):
  grey1, _, rgb1, _, _ = _random_images(_fresh_seed())
  with pytest.raises(ValueError, match=r"95x89 \(HxW\).*94x89"):
    inference.fuse_images(frufn, [grey1, rgb1[:94]])
  with pytest.raises(ValueError, match="at least two"):
    inference.fuse_images(frufn, [grey1])
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    inference.fuse_images(frufn, [grey1 * 255, grey1])
  with pytest.raises(ValueError, match=r"\(H, W, 1\) or \(H, W, 3\)"):
    inference.fuse_images(frufn, [grey1[..., 0], grey1])


def test_compiled_functions_are_shared_across_parameters(frufn):
  grey1, grey2, _, _, _ = _random_images(_fresh_seed())
  first = inference.fuse_luma(frufn, [grey1, grey2])
  again = inference.fuse_luma(frufn, [grey1, grey2])
  other = tiny_fusion_model(TINY_FRUFN, seed=123)  # same architecture, new parameters
  result = inference.fuse_luma(other, [grey1, grey2])
  assert not again.compiled and not result.compiled
  np.testing.assert_array_equal(first.luma, again.luma)
  assert np.abs(result.luma - first.luma).max() > 1e-4


@pytest.mark.slow
def test_efrufn_reports_solver_stats_and_tiles_exactly():
  fm = tiny_fusion_model(TINY_EFRUFN, seed=_fresh_seed())
  sources = [s[:150, :140] for s in real_pair("tno", 1)]
  lumas = [color.split_luma_chroma(s)[0] for s in sources]
  tiled = inference.fuse_luma(fm, lumas, tile_size=96, tile_overlap=32)
  assert tiled.tiles == 2 * 2 and tiled.luma.shape == (150, 140, 1)
  assert tiled.solver_stats is not None and 1 <= tiled.solver_stats["num_steps"] <= 3
  assert tiled.solver_stats["finite"] and np.isfinite(tiled.luma).all()
  # The first tile is the 96 x 96 crop at the origin, and it alone covers the first 72 x 72 pixels
  # (stride 64 plus the discarded quarter of the overlap): there the tiled result is the network's
  # output on that crop, computed by the same compiled function.
  crop = inference.fuse_luma(fm, [y[:96, :96] for y in lumas])
  assert not crop.compiled
  np.testing.assert_allclose(tiled.luma[:72, :72], crop.luma[:72, :72], atol=1e-6)
  # Beyond it the neighbours blend in: Anderson and the unit's RMS scaling see a whole tile, so an
  # EFRUFN tile differs from the same pixels in another tile.
  print(
    f"EFRUFN: tiled vs crop-alone in the cross-fade: max |diff| "
    f"{np.abs(tiled.luma[72:96, :96] - crop.luma[72:96]).max():.4g}"
  )


def test_forward_cost_counts_every_loop_iteration(frufn):
  one = cost.forward_cost(frufn, 50, 70)
  assert one["input_size"] == [56, 72] and one["flops"] > 0 and not one["while_loops"]
  assert [(loop["kind"], loop["trips"]) for loop in one["loops"]] == [("scan", 1.0)]
  assert one["flops"] == pytest.approx(one["flops_xla"])
  # Twice the pixels, about twice the FLOPs (the network is convolutional).
  double = cost.forward_cost(frufn, 110, 70)
  assert 1.8 < double["flops"] / one["flops"] < 2.2
  # Three units under scan: XLA alone counts one; the loop-aware count adds the other two.
  three = cost.forward_cost(tiny_fusion_model(dict(TINY_FRUFN, num_units=3)), 50, 70)
  body = three["loops"][0]["body_flops"]
  assert three["loops"][0]["trips"] == 3 and body > 0.2 * one["flops"]
  assert three["flops_xla"] == pytest.approx(one["flops_xla"], rel=1e-3)
  assert three["flops"] == pytest.approx(one["flops"] + 2 * body, rel=1e-3)
  # With a ColorNet, its FLOPs at the image's own size are reported beside the network's.
  coloured = cost.forward_cost(tiny_fusion_model(TINY_FRUFN, colornet=True), 50, 70)
  assert coloured["colornet_flops"] > 0 and coloured["flops"] == pytest.approx(one["flops"])
  assert "colornet_flops" not in one


def test_parameters_and_description_of_a_model(frufn):
  leaves = jax.tree.leaves(frufn.params)
  assert (
    cost.count_parameters(frufn.params) == sum(leaf.size for leaf in leaves) == frufn.num_params > 0
  )
  assert cost.count_parameters(None) == 0
  described = cost.describe(frufn)
  assert (
    described["network"] == "FRUFN"
    and described["params"] == described["network_params"] == frufn.num_params
  )
  assert described["colornet_params"] == 0


def test_xla_flops_of_a_lowered_and_a_compiled_program():
  a = jnp.ones((16, 32), jnp.float32)
  b = jnp.ones((32, 8), jnp.float32)
  lowered = jax.jit(lambda x, y: x @ y).lower(a, b)
  # A (16 x 32) @ (32 x 8) product: 16 * 8 * 32 multiply-adds.
  assert cost.xla_flops(lowered) == pytest.approx(2 * 16 * 8 * 32, rel=0.05)
  assert cost.xla_flops(lowered.compile()) == pytest.approx(cost.xla_flops(lowered), rel=0.05)


def test_fuse_files_writes_colour_and_keeps_existing_output_on_error(tmp_path, frufn):
  grey1, _, rgb1, rgb2, _ = _random_images(_fresh_seed())
  paths = []
  for name, image in (("a.png", rgb1), ("b.jpg", grey1), ("c.png", rgb2[:30])):
    imageio.save_image(tmp_path / name, image)
    paths.append(tmp_path / name)
  out = batch.fuse_files(paths[:2], tmp_path / "out.png", ckpt=frufn)
  assert imageio.load_image(out).shape == SIZE + (3,)
  before = out.read_bytes()
  with pytest.raises(ValueError, match="same size"):
    batch.fuse_files([paths[0], paths[2]], out, ckpt=frufn)
  with pytest.raises(ValueError, match="needs a 'ivf'|needs a 'mfif'"):
    batch.fuse_files(paths[:2], out, ckpt=frufn, task="mfif")
  assert out.read_bytes() == before


def test_padding_matches_the_network_and_pad_multiple_buckets_shapes(frufn):
  from fusionjax.models import padding

  grey1, grey2, _, _, _ = _random_images(_fresh_seed())
  # Inference pads exactly as the network pads its own input (whose padding is then a no-op), so
  # the fused image is the network's output on the image itself.
  multiple = frufn.model.multiple
  assert inference.network_align(frufn) == multiple == 8
  ours = tiling.reflect_pad(grey1, 96, 96)
  np.testing.assert_array_equal(
    ours, np.asarray(padding.pad_to_multiple(jnp.asarray(grey1)[None], multiple)[0])
  )
  exact = inference.fuse_luma(frufn, [grey1, grey2])
  # Coarser padding: one compiled shape for many sizes (here all pad to 96 x 96, already compiled).
  assert inference.network_align(frufn, pad_multiple=96) == 96
  bucketed = [
    inference.fuse_luma(frufn, [grey1[:h, :w], grey2[:h, :w]], pad_multiple=96)
    for h, w in ((95, 89), (90, 70), (70, 80))
  ]
  assert not any(b.compiled for b in bucketed)
  assert [b.luma.shape for b in bucketed] == [(95, 89, 1), (90, 70, 1), (70, 80, 1)]
  np.testing.assert_array_equal(bucketed[0].luma, exact.luma)
  with pytest.raises(ValueError, match="positive"):
    inference.network_align(frufn, pad_multiple=0)


def test_terminal_progress_draws_only_on_a_terminal():
  import io

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  assert inference.terminal_progress(stream=io.StringIO()) is None
  screen = Terminal()
  update = inference.terminal_progress("tiles", stream=screen)
  update(1, 1)  # a single tile draws nothing
  assert screen.getvalue() == ""
  for done in range(1, 5):
    update(done, 4)
  assert "tiles:" in screen.getvalue() and "/4 [" in screen.getvalue()


def test_batched_tiles_fuse_like_single_tiles():
  model = stages.load_fusion_model(weights.shipped_checkpoint("ivf"))
  pair = sample_pairs.sample_pair("tno")
  lumas = [color.split_luma_chroma(imageio.load_image(p))[0][:192, :256] for p in pair.sources]
  kwargs = dict(tile_size=128, tile_overlap=32)
  one = inference.fuse_luma(model, lumas, **kwargs)
  three = inference.fuse_luma(model, lumas, tile_batch=3, **kwargs)
  assert one.tiles == three.tiles > 3
  np.testing.assert_allclose(three.luma, one.luma, atol=2e-5)
