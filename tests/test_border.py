"""The networks' ``border``: reflected context instead of zero padding at the image's own edges."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax import models
from fusionjax.models import padding

TINY = dict(width=4, num_heads=1, cpb_hidden=8, swin_depth=1, max_iter=2)
# One compile per call instead of op-by-op dispatch; no backend optimisation (faster to compile).
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _apply(model, variables, y1, y2):
  return _jit(lambda v, a, b: model.apply(v, a, b, mutable=["intermediates"]))(variables, y1, y2)


@pytest.mark.parametrize("name", ["efrufn", "frufn"])
def test_border_equals_fusing_the_reflected_image_and_cropping(name):
  config = dict(TINY, name=name, num_units=2) if name == "frufn" else dict(TINY, name=name)
  model = models.create_model(config)
  rng = np.random.default_rng(0)
  y1, y2 = (jnp.asarray(rng.random((1, 21, 30, 1)), jnp.float32) for _ in range(2))  # odd, non-square
  variables = _jit(model.init)(jax.random.PRNGKey(0), y1, y2)
  b = 5
  fused, state = _apply(model.clone(border=b), variables, y1, y2)
  reflect = lambda y: jnp.pad(y, ((0, 0), (b, b), (b, b), (0, 0)), mode="reflect")
  whole, whole_state = _apply(model, variables, reflect(y1), reflect(y2))
  assert fused.shape == y1.shape
  np.testing.assert_allclose(fused, whole[:, b:b + 21, b:b + 30], atol=1e-6)
  mask = state["intermediates"]["mask"][0]
  np.testing.assert_allclose(mask, whole_state["intermediates"]["mask"][0][:, b:b + 21, b:b + 30], atol=1e-6)
  # The border changes the result near the edges only when the network is not already exact there.
  plain, _ = _apply(model, variables, y1, y2)
  assert float(jnp.max(jnp.abs(plain - fused))) > 0


def test_pad_with_border_and_crop_round_trip():
  x = jnp.arange(2 * 7 * 9 * 1, dtype=jnp.float32).reshape(2, 7, 9, 1)
  padded = padding.pad_with_border(x, 3, 8)
  assert padded.shape == (2, 16, 16, 1)
  np.testing.assert_array_equal(padding.crop_to(padded, 7, 9, offset=3), x)
  # Reflection without repeating the edge: row -1 is row 1, column -2 is column 2.
  np.testing.assert_array_equal(padded[:, 2, 3:12], x[:, 1])
  np.testing.assert_array_equal(padded[:, 3:10, 1], x[:, :, 2])
  with pytest.raises(ValueError, match="border must be >= 0"):
    padding.pad_with_border(x, -1, 8)
  with pytest.raises(ValueError, match="offset 3"):
    padding.crop_to(x, 7, 9, offset=3)
