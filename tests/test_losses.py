"""Tests of fusionjax.losses on constructed cases and against float64 references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from fusionjax import losses

SEEDS = [0, 1, 2]
# Non-square, odd sizes on purpose.
SHAPES = [(2, 23, 37, 1), (1, 16, 13, 1)]


def _rng(seed):
  print(f"seed={seed}")
  return np.random.default_rng(seed)


def _sobel_reference(image: np.ndarray) -> np.ndarray:
  """float64 |Gx| + |Gy| with edge replication, per image and channel (scipy)."""
  image = np.asarray(image, np.float64)
  out = np.zeros_like(image)
  for b in range(image.shape[0]):
    for c in range(image.shape[-1]):
      gx = ndimage.sobel(image[b, :, :, c], axis=1, mode="nearest")
      gy = ndimage.sobel(image[b, :, :, c], axis=0, mode="nearest")
      out[b, :, :, c] = np.abs(gx) + np.abs(gy)
  return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES + [(1, 9, 20, 2)])
def test_sobel_matches_float64_reference(seed, shape):
  image = _rng(seed).random(shape)
  got = np.asarray(losses.sobel_gradient(jnp.asarray(image, jnp.float32)))
  np.testing.assert_allclose(got, _sobel_reference(image), atol=2e-5)


def test_sobel_of_a_step_edge():
  image = np.zeros((1, 7, 9, 1), np.float32)
  image[:, :, 4:] = 1.0
  grad = np.asarray(losses.sobel_gradient(image))[0, :, :, 0]
  # Columns next to the step see the full [1 2 1] weight (4); flat columns, borders included, see 0.
  np.testing.assert_allclose(grad[:, 3], 4.0)
  np.testing.assert_allclose(grad[:, 4], 4.0)
  np.testing.assert_allclose(grad[:, [0, 1, 2, 5, 6, 7, 8]], 0.0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_loss_zero_for_identical_and_positive_otherwise(seed, shape):
  rng = _rng(seed)
  a = rng.random(shape).astype(np.float32)
  assert abs(float(losses.ssim_loss(a, a))) < 1e-5
  b = np.clip(a + 0.2 * rng.standard_normal(shape), 0, 1).astype(np.float32)
  assert float(losses.ssim_loss(a, b)) > 0.05


def test_ssim_loss_accepts_bfloat16_and_returns_float32():
  a = jnp.asarray(_rng(3).random((1, 12, 15, 1)), jnp.bfloat16)
  value = losses.ssim_loss(a, a)
  assert value.dtype == jnp.float32
  assert abs(float(value)) < 1e-5


def test_ssim_rejects_small_crops_and_wrong_rank():
  with pytest.raises(ValueError, match="patch_size"):
    losses.ssim_loss(np.zeros((1, 10, 30, 1)), np.zeros((1, 10, 30, 1)))
  with pytest.raises(ValueError, match="NHWC"):
    losses.ssim_loss(np.zeros((12, 12, 1)), np.zeros((12, 12, 1)))
  with pytest.raises(ValueError, match="same shape"):
    losses.ssim_loss(np.zeros((1, 12, 12, 1)), np.zeros((1, 12, 13, 1)))


def _two_edge_image(height, width, contrast_left, contrast_right):
  """Image with a vertical step at width/4 and another at 3*width/4."""
  image = np.zeros((1, height, width, 1), np.float64)
  image[:, :, width // 4 :] += contrast_left
  image[:, :, 3 * width // 4 :] += contrast_right
  return image


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_transfer_zero_where_student_is_stronger_positive_elsewhere(seed):
  rng = _rng(seed)
  height, width = int(rng.integers(11, 20)), int(rng.integers(24, 41))
  a, b = rng.uniform(0.1, 0.3, size=2)
  teacher = _two_edge_image(height, width, a, b)
  # Student: the left edge stronger than the teacher's, the right edge missing.
  student = _two_edge_image(height, width, a * rng.uniform(1.2, 2.0), 0.0)
  grad_t, grad_s = _sobel_reference(teacher), _sobel_reference(student)
  deficit = np.maximum(grad_t - grad_s, 0.0)
  # Constructed case: no deficit round the left edge, the full teacher gradient round the right one.
  left = slice(0, width // 2)
  right = slice(width // 2, width)
  assert np.all(deficit[..., left, :] == 0.0)
  assert np.all(deficit[..., right, :][grad_t[..., right, :] > 0] > 0)
  got = float(losses.gradient_transfer_loss(student.astype(np.float32), teacher.astype(np.float32)))
  np.testing.assert_allclose(got, deficit.mean(), rtol=1e-5)
  assert got > 0
  # A student at least as sharp everywhere pays nothing (Sobel is linear; doubling is exact in float).
  assert float(losses.gradient_transfer_loss(2.0 * teacher, teacher)) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_transfer_matches_reference_and_never_differentiates_teacher(seed):
  rng = _rng(seed)
  student = rng.random((2, 15, 21, 1))
  teacher = rng.random((2, 15, 21, 1))
  expected = np.maximum(_sobel_reference(teacher) - _sobel_reference(student), 0).mean()
  got = losses.gradient_transfer_loss(
    jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32)
  )
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  grad_teacher = jax.grad(losses.gradient_transfer_loss, argnums=1)(
    jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32)
  )
  assert np.all(np.asarray(grad_teacher) == 0.0)
  grad_student = jax.grad(losses.gradient_transfer_loss)(
    jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32)
  )
  assert np.all(np.isfinite(grad_student)) and np.any(np.asarray(grad_student) != 0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_intensity_loss_constructed(seed):
  rng = _rng(seed)
  vis = rng.uniform(0, 0.8, (2, 13, 17, 1))
  ir = rng.uniform(0, 0.8, (2, 13, 17, 1))
  target = np.maximum(vis, ir)
  assert float(losses.intensity_loss(target, vis, ir)) == pytest.approx(0.0, abs=1e-7)
  offset = rng.uniform(0.05, 0.2)
  assert float(losses.intensity_loss(target + offset, vis, ir)) == pytest.approx(offset, rel=1e-5)
  fused = rng.random(vis.shape)
  assert float(losses.intensity_loss(fused, vis, ir)) == pytest.approx(
    np.abs(fused - target).mean(), rel=1e-5
  )


@pytest.mark.parametrize("seed", SEEDS)
def test_texture_loss_constructed(seed):
  rng = _rng(seed)
  h, w = 14, 27
  # Visible has the left edge, infrared the right one: a fusion with both edges at the stronger contrast
  # has exactly the target gradient.
  vis = _two_edge_image(h, w, 0.4, 0.0)
  ir = _two_edge_image(h, w, 0.0, 0.5)
  both = _two_edge_image(h, w, 0.4, 0.5)
  assert float(losses.texture_loss(both, vis, ir)) == pytest.approx(0.0, abs=1e-6)
  # Missing the infrared edge costs exactly its gradient.
  expected = np.abs(
    _sobel_reference(vis) - np.maximum(_sobel_reference(vis), _sobel_reference(ir))
  ).mean()
  assert expected > 0
  assert float(losses.texture_loss(vis, vis, ir)) == pytest.approx(expected, rel=1e-5)
  fused = rng.random(vis.shape)
  ref = np.abs(
    _sobel_reference(fused) - np.maximum(_sobel_reference(vis), _sobel_reference(ir))
  ).mean()
  assert float(losses.texture_loss(fused, vis, ir)) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_structure_loss_constructed(seed):
  rng = _rng(seed)
  vis = rng.random((1, 19, 12, 1)).astype(np.float32)
  ir = rng.random((1, 19, 12, 1)).astype(np.float32)
  assert float(losses.structure_loss(vis, vis, vis)) == pytest.approx(0.0, abs=1e-5)
  # Fusion equal to the visible image: the visible term vanishes, the infrared term is 1 - SSIM(vis, ir).
  expected = 1.0 - float(losses.ssim(vis, ir))
  assert float(losses.structure_loss(vis, vis, ir)) == pytest.approx(expected, abs=1e-5)
  assert expected > 0.5  # independent noise images are far apart in SSIM


def test_ivf_reconstruction_loss_weights_terms():
  rng = _rng(4)
  vis, ir, fused = (rng.random((2, 16, 21, 1)).astype(np.float32) for _ in range(3))
  total, terms = losses.ivf_reconstruction_loss(fused, vis, ir, beta1=2.5, beta2=0.5)
  assert set(terms) == {"intensity", "texture", "structure"}
  expected = terms["intensity"] + 2.5 * terms["texture"] + 0.5 * terms["structure"]
  assert float(total) == pytest.approx(float(expected), rel=1e-6)
  assert float(terms["intensity"]) == pytest.approx(float(losses.intensity_loss(fused, vis, ir)))


def test_color_loss_constructed():
  rng = _rng(5)
  ref = rng.uniform(0.2, 0.8, (2, 11, 14, 2))
  assert float(losses.color_loss(ref, ref)) == 0.0
  assert float(losses.color_loss(ref - 0.1, ref)) == pytest.approx(0.1, rel=1e-5)
  with pytest.raises(ValueError, match="same shape"):
    losses.color_loss(ref[..., :1], ref)
