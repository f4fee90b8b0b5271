"""Synthetic multi-focus and multi-exposure pairs (fusionjax.data.synthetic)."""

import numpy as np
import pytest
from scipy import ndimage

from fusionjax.data.synthetic import (
  exposure_stack,
  multi_exposure_pair,
  multi_focus_pair,
  random_focus_mask,
  random_response_curve,
)

SEEDS = [int(s) for s in np.random.SeedSequence().generate_state(3)]


def textured_image(rng, height, width, channels):
  """Detailed content at every position (fine noise on a smooth shading), in [0, 1]."""
  fine = rng.random((height, width, channels))
  shading = ndimage.gaussian_filter(rng.random((height, width, 1)), 8)
  return np.clip(
    0.2 + 0.5 * fine * 0.8 + 0.3 * (shading - shading.min()) / np.ptp(shading), 0, 1
  ).astype(np.float32)


def gradient_energy(image):
  luma = image.mean(axis=-1)
  gy, gx = np.gradient(luma.astype(np.float64))
  return gx**2 + gy**2


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(37, 53, 3), (64, 41, 1)])
def test_multi_focus_shapes_ranges_and_determinism(seed, shape):
  print("seed", seed)
  image = textured_image(np.random.default_rng(seed), *shape)
  near, far, reference, mask = multi_focus_pair(image, np.random.default_rng(seed))
  for array in (near, far, reference):
    assert array.shape == shape and array.dtype == np.float32
    assert array.min() >= 0.0 and array.max() <= 1.0
  assert mask.shape == shape[:2] + (1,) and set(np.unique(mask)) <= {0.0, 1.0}
  assert 0.25 <= mask.mean() <= 0.75
  np.testing.assert_array_equal(reference, image)
  again = multi_focus_pair(image, np.random.default_rng(seed))
  for a, b in zip((near, far, reference, mask), again):
    np.testing.assert_array_equal(a, b)
  other = multi_focus_pair(image, np.random.default_rng(seed + 1))
  assert not np.array_equal(near, other[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_near_is_sharper_than_far_inside_the_mask(seed):
  print("seed", seed)
  rng = np.random.default_rng(seed)
  image = textured_image(rng, 160, 200, 3)
  near, far, _, mask = multi_focus_pair(image, rng, sigma_range=(1.5, 4.0), mask_cells_range=(2, 3))
  # Away from the boundary (where the blur blends), each side of the mask is sharp in one shot only.
  # The blur kernel (truncated at 3σ = 12 px, square support) reaches 12·√2 < 17 px.
  inside = ndimage.distance_transform_edt(mask[..., 0] > 0.5) > 17
  outside = ndimage.distance_transform_edt(mask[..., 0] < 0.5) > 17
  assert inside.sum() > 50 and outside.sum() > 50
  energy_near, energy_far, energy_ref = (gradient_energy(x) for x in (near, far, image))
  assert energy_near[inside].mean() > 4 * energy_far[inside].mean()
  assert energy_far[outside].mean() > 4 * energy_near[outside].mean()
  # The in-focus parts are the photograph itself.
  np.testing.assert_allclose(near[inside], image[inside], atol=1e-4)
  np.testing.assert_allclose(far[outside], image[outside], atol=1e-4)
  assert abs(energy_near[inside].mean() - energy_ref[inside].mean()) < 1e-3


def test_focus_mask_fraction_and_smoothness():
  rng = np.random.default_rng(0)
  for _ in range(5):
    mask = random_focus_mask(50, 70, rng, fraction_range=(0.4, 0.4), cells_range=(2, 2))
    assert abs(mask.mean() - 0.4) < 0.01
    # A smooth field gives a few blobs, not salt-and-pepper: few boundary pixels.
    boundary = (
      np.abs(np.diff(mask[..., 0], axis=0)).sum() + np.abs(np.diff(mask[..., 0], axis=1)).sum()
    )
    assert boundary < 0.1 * mask.size


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(33, 47, 3), (40, 30, 1)])
def test_multi_exposure_brackets_the_reference(seed, shape):
  print("seed", seed)
  rng = np.random.default_rng(seed)
  image = textured_image(rng, *shape)
  under, over, reference = multi_exposure_pair(image, np.random.default_rng(seed))
  for array in (under, over, reference):
    assert array.shape == shape and array.dtype == np.float32
    assert array.min() >= 0.0 and array.max() <= 1.0
  np.testing.assert_array_equal(reference, image)
  assert under.mean() < reference.mean() - 0.05 < over.mean() - 0.1
  # Quantised to 8-bit levels like the real sources.
  np.testing.assert_allclose(under * 255, np.round(under * 255), atol=1e-3)
  again = multi_exposure_pair(image, np.random.default_rng(seed))
  np.testing.assert_array_equal(under, again[0])
  np.testing.assert_array_equal(over, again[1])


def test_multi_exposure_without_noise_brackets_every_pixel():
  rng = np.random.default_rng(3)
  image = textured_image(rng, 30, 31, 3)
  under, over, _ = multi_exposure_pair(
    image, rng, shot_noise_range=(1e-12, 1e-12), read_noise_range=(1e-12, 1e-12)
  )
  half_level = 0.5 / 255 + 1e-4  # quantisation plus the response table's interpolation
  assert np.all(under <= image + half_level) and np.all(over >= image - half_level)
  # Over-exposure saturates somewhere, under-exposure keeps the highlights below white.
  assert over.max() == 1.0 and under.max() < 1.0


@pytest.mark.parametrize("num_shots", [2, 3, 5])
def test_exposure_stack_runs_from_dark_to_bright(num_shots):
  rng = np.random.default_rng(5)
  image = textured_image(rng, 30, 31, 3)
  quiet = dict(shot_noise_range=(1e-12, 1e-12), read_noise_range=(1e-12, 1e-12))
  shots, reference = exposure_stack(image, np.random.default_rng(7), num_shots, **quiet)
  assert len(shots) == num_shots and all(s.shape == image.shape for s in shots)
  np.testing.assert_array_equal(reference, image)
  # Without noise every shot is at least as bright as the one before, pixel by pixel.
  for darker, brighter in zip(shots, shots[1:]):
    assert np.all(brighter >= darker - 1e-6) and brighter.mean() > darker.mean()
  assert shots[0].mean() < image.mean() < shots[-1].mean()
  again, _ = exposure_stack(image, np.random.default_rng(7), num_shots, **quiet)
  for a, b in zip(shots, again):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="num_shots must be at least 2"):
    exposure_stack(image, rng, 1)
  with pytest.raises(ValueError, match="under_ev"):
    exposure_stack(image, rng, 3, under_ev=(1.0, 2.0))


def test_response_curve_is_monotone_and_invertible():
  rng = np.random.default_rng(11)
  x = np.linspace(0, 1, 1001)
  for _ in range(5):
    response, inverse = random_response_curve(rng)
    y = response(x)
    assert y[0] == 0.0 and abs(y[-1] - 1.0) < 1e-6 and np.all(np.diff(y) > 0)
    np.testing.assert_allclose(inverse(y), x, atol=2e-3)
    assert np.all(y[1:-1] > x[1:-1])  # a camera curve brightens the mid-tones of linear light


def test_bad_inputs_are_refused():
  rng = np.random.default_rng(0)
  good = np.full((8, 8, 3), 0.5, np.float32)
  with pytest.raises(ValueError, match="float array"):
    multi_focus_pair((good * 255).astype(np.uint8), rng)
  with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB or \(H, W, 1\) grey"):
    multi_focus_pair(good[..., 0], rng)
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    multi_exposure_pair(good * 2.5, rng)
  with pytest.raises(ValueError, match="sigma_range"):
    multi_focus_pair(good, rng, sigma_range=(4.0, 1.0))
  with pytest.raises(ValueError, match="under_ev"):
    multi_exposure_pair(good, rng, under_ev=(-1.0, 1.0))
  with pytest.raises(ValueError, match="contrast_range"):
    random_response_curve(rng, contrast_range=(0.0, 1.5))
