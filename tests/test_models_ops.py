"""Per-backend formulations of the network's operations (fusionjax.models.ops): every formulation
computes the same function, with the same gradients, and the shipped weights fuse as before."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax import color
from fusionjax import imageio
from fusionjax import stages
from fusionjax import weights
from fusionjax.data import sample_pairs
from fusionjax.models import ops
from fusionjax.models.blocks import ConvNeXtBlock


@pytest.mark.parametrize("shape,k", [((2, 13, 21, 5), 7), ((1, 9, 8, 3), 3), ((1, 4, 6, 2), 5)])
def test_depthwise_formulations_agree_with_grouped_conv(shape, k):
  rng = np.random.default_rng(sum(shape) + k)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((k, k, 1, shape[-1])), jnp.float32)
  bias = jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32)
  cotangent = jnp.asarray(rng.standard_normal(shape), jnp.float32)

  def run(implementation):
    f = lambda x, w, b: ops.depthwise_conv2d(x, w, b, implementation=implementation)
    out, vjp = jax.vjp(jax.jit(f), x, kernel, bias)
    return (out,) + vjp(cotangent)

  # The float64 reference: the grouped convolution that nn.Conv(feature_group_count=C) runs.
  with jax.enable_x64(True):
    ref = jax.vjp(
      lambda x, w, b: (
        jax.lax.conv_general_dilated(
          x,
          w,
          (1, 1),
          "SAME",
          dimension_numbers=("NHWC", "HWIO", "NHWC"),
          feature_group_count=shape[-1],
        )
        + b
      ),
      *(jnp.asarray(a, jnp.float64) for a in (x, kernel, bias)),
    )
    ref = (ref[0],) + ref[1](jnp.asarray(cotangent, jnp.float64))
    ref = [np.asarray(r) for r in ref]
  for implementation in ops.IMPLEMENTATIONS["depthwise_conv2d"]:
    for got, want, name in zip(run(implementation), ref, ("out", "dx", "dkernel", "dbias")):
      scale = np.abs(want).max()
      np.testing.assert_allclose(
        got, want, atol=2e-5 * scale, rtol=0, err_msg=f"{implementation} {name}"
      )


def test_depthwise_module_has_nn_conv_parameters():
  x = jnp.zeros((1, 8, 8, 4))
  reference = nn.Conv(4, (7, 7), feature_group_count=4).init(jax.random.PRNGKey(1), x)
  ours = ops.DepthwiseConv(4, 7).init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(reference) == jax.tree.structure(ours)
  for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(ours)):
    np.testing.assert_array_equal(a, b)


def test_implementations_override_and_validation():
  default = ops.resolve("depthwise_conv2d")
  assert default == ("shifted" if jax.default_backend() == "cpu" else "xla")
  with ops.implementations(depthwise_conv2d="xla"):
    assert ops.resolve("depthwise_conv2d") == "xla"
    assert ops.resolve("depthwise_conv2d", "shifted") == "shifted"  # an explicit choice wins
  assert ops.resolve("depthwise_conv2d") == default
  with pytest.raises(ValueError, match="Unknown implementation"):
    with ops.implementations(depthwise_conv2d="fft"):
      pass
  with pytest.raises(ValueError, match="must be one of"):
    ops.resolve("depthwise_conv2d", "fft")
  with pytest.raises(ValueError, match="odd"):
    ops.depthwise_conv2d(jnp.zeros((1, 4, 4, 2)), jnp.zeros((4, 4, 1, 2)))


def test_convnext_block_gradients_agree_across_formulations():
  block = ConvNeXtBlock(8)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 12, 10, 8)), jnp.float32)
  params = block.init(jax.random.PRNGKey(0), x)
  params = jax.tree.map(
    lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params
  )
  loss = lambda p, x: jnp.sum(jnp.sin(block.apply(p, x)))
  grads = {}
  for implementation in ops.IMPLEMENTATIONS["depthwise_conv2d"]:
    with ops.implementations(depthwise_conv2d=implementation):
      grads[implementation] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
  a, b = (jax.tree.leaves(g) for g in grads.values())
  for u, v in zip(a, b):
    np.testing.assert_allclose(u, v, atol=1e-5 * max(1.0, float(np.abs(v).max())), rtol=1e-5)


@pytest.mark.parametrize("stage,pair,crop", [("ivf", "tno", None), ("mfif", "lytro", 160)])
def test_shipped_outputs_unchanged_by_formulation(stage, pair, crop):
  model = stages.load_fusion_model(weights.shipped_checkpoint(stage), expected_task=stage)
  y = [
    color.split_luma_chroma(imageio.load_image(path))[0]
    for path in sample_pairs.sample_pair(pair).sources
  ]
  if crop:
    y = [im[:crop, :crop] for im in y]
  y1, y2 = (jnp.asarray(im[None]) for im in y)
  outputs = {}
  for implementation in ops.IMPLEMENTATIONS["depthwise_conv2d"]:
    with ops.implementations(depthwise_conv2d=implementation):
      outputs[implementation] = np.asarray(
        jax.jit(lambda p, u, v: model.model.apply({"params": p}, u, v))(model.params, y1, y2)
      )
  first, second = outputs.values()
  assert np.abs(first - second).max() <= 1e-5
