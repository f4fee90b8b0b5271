"""Tests of ColorNet, the MEIF chroma network."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax.color import fuse_chroma
from fusionjax.models import ColorNet

# LLVM optimisations off: about half the compile time on CPU for these tiny workloads.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture
def rng():
  """A fresh generator per test; the seed is printed so a failure can be replayed."""
  seed = int.from_bytes(os.urandom(4), "little")
  print(f"numpy seed: {seed}")
  return np.random.default_rng(seed)


def _inputs(rng, shape):
  b, h, w = shape
  chroma = lambda: jnp.asarray(rng.random((b, h, w, 2)), jnp.float32)
  return chroma(), chroma(), jnp.asarray(rng.random((b, h, w, 1)), jnp.float32)


@functools.lru_cache(maxsize=None)
def _params():
  net = ColorNet(features=8)
  x = jnp.full((1, 8, 8, 2), 0.5)
  with jax.threefry_partitionable(False):  # Compiles ~10x faster on CPU.
    return _jit(net.init)(jax.random.PRNGKey(0), x, x, x[..., :1])


def test_untrained_colornet_is_close_to_the_weighted_average_rule(rng):
  net = ColorNet(features=8)
  for shape in [(1, 37, 53), (2, 7, 5)]:
    crcb1, crcb2, y = _inputs(rng, shape)
    out = _jit(net.apply)(_params(), crcb1, crcb2, y)
    assert out.shape == shape + (2,) and out.dtype == jnp.float32
    assert np.isfinite(out).all() and (out > 0).all() and (out < 1).all()
    rule = fuse_chroma(crcb1, crcb2)
    # Near the rule (the clip at 1e-3 and the small initial correction), but not equal to it.
    error = np.abs(np.asarray(out - rule))
    assert error.max() < 0.05 and error.mean() < 0.01
    assert error.max() > 0


def test_colornet_gradients_reach_every_parameter(rng):
  net = ColorNet(features=8)
  crcb1, crcb2, y = _inputs(rng, (1, 24, 16))
  target = jnp.asarray(rng.random((1, 24, 16, 2)), jnp.float32)
  loss = lambda p: jnp.mean(jnp.abs(net.apply(p, crcb1, crcb2, y) - target))  # Eq. 8.
  grads = _jit(jax.grad(loss))(_params())
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)


def test_colornet_can_move_away_from_the_rule(rng):
  # A large last-layer bias shifts the output's logit by that much everywhere.
  net = ColorNet(features=8)
  crcb1, crcb2, y = _inputs(rng, (1, 9, 11))
  params = jax.tree_util.tree_map(lambda a: a, _params())
  params["params"]["conv_out"]["bias"] = jnp.array([2.0, -2.0])
  out = _jit(net.apply)(params, crcb1, crcb2, y)
  base = _jit(net.apply)(_params(), crcb1, crcb2, y)
  assert (out[..., 0] > base[..., 0]).all() and (out[..., 1] < base[..., 1]).all()


def test_colornet_rejects_bad_inputs():
  net = ColorNet(features=8)
  good2, good1 = jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 8, 1))
  cases = [
    ((jnp.zeros((8, 8, 2)), good2, good1), "shape"),
    ((jnp.zeros((1, 8, 8, 3)), good2, good1), r"\(B, H, W, 2\)"),
    ((good2, good2, good2), r"\(B, H, W, 1\)"),
    ((good2, jnp.zeros((1, 8, 9, 2)), good1), "share"),
    ((good2, good2, jnp.zeros((1, 8, 9, 1))), "share"),
    ((jnp.zeros((1, 0, 8, 2)), jnp.zeros((1, 0, 8, 2)), jnp.zeros((1, 0, 8, 1))), "empty"),
  ]
  for args, message in cases:
    with pytest.raises(ValueError, match=message):
      jax.eval_shape(net.init, jax.random.PRNGKey(0), *args)
