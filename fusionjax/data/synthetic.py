"""Synthetic training pairs from sharp, well-exposed photographs (the original is the reference).

No multi-focus set with all-in-focus references and only 11 multi-exposure scenes with references are
available here, so the supervised stages train on pairs synthesised from clean photographs, the way
MFI-WHU and IFCNN's training sets were made. Both generators are numpy only and deterministic given a
``np.random.Generator``; they work on (H, W, 3) RGB or (H, W, 1) grey float arrays in [0, 1] and return
float32 arrays of the same shape.

Multi-focus (:func:`multi_focus_pair`): a random smooth region plays the in-focus foreground of the
near-focus shot. Defocus is simulated as layered depth: in the near shot the background is blurred; in
the far shot the foreground layer is blurred together with its own coverage, so its blur spreads over
the sharp background as a defocused occluder does in a real lens.

Multi-exposure (:func:`multi_exposure_pair`): the photograph is linearised with a random camera response
curve, scaled by a random exposure value, given shot and read noise, clipped at sensor saturation, passed
through the same response curve and quantised to 8 bits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

#: Blur σ in pixels of the defocused regions. σ 1..4 px spans slight to strong defocus at the 128..256 px
#: patch scale of training; MFI-WHU used Gaussian blur of the same order.
DEFAULT_SIGMA_RANGE = (1.0, 4.0)
#: Fraction of the image in focus in the near shot. Kept inside 0.3..0.7 so both shots have a sizeable
#: sharp part; a patch that is sharp almost everywhere teaches nothing about choosing.
DEFAULT_MASK_FRACTION_RANGE = (0.3, 0.7)
#: Control points of the random field along the short side. 2..6 gives one to a few blobs per patch,
#: the scale of objects against background in the Lytro and MFI-WHU test pairs.
DEFAULT_MASK_CELLS_RANGE = (2, 6)
#: Display gamma used to blur in linear light: defocus integrates light, so highlights bloom as in
#: a real lens only when the blur is applied to linear values (2.2 is the sRGB average).
DEFAULT_BLUR_GAMMA = 2.2

#: Exposure value of the under-exposed shot, stops below the reference: -1..-3 EV is the usual
#: bracketing of two-shot exposure fusion (MEFB's and SICE's darkest/brightest pairs are of this order).
DEFAULT_UNDER_EV = (-3.0, -1.0)
#: Exposure value of the over-exposed shot, stops above the reference.
DEFAULT_OVER_EV = (1.0, 3.0)
#: Gamma of the random camera response curve; 1.8..2.6 covers sRGB (2.2) and common camera curves.
DEFAULT_RESPONSE_GAMMA_RANGE = (1.8, 2.6)
#: Strength of the S-shaped tone curve mixed into the response (0 = pure gamma); cameras add contrast
#: this way. Values below 1 keep the curve strictly increasing, hence invertible.
DEFAULT_RESPONSE_CONTRAST_RANGE = (0.0, 0.5)
#: Shot-noise variance per unit linear signal (full scale = 1), drawn log-uniformly: 1e-4 is a large
#: sensor (about 10^4 electrons at saturation), 1e-3 a phone sensor at moderate ISO.
DEFAULT_SHOT_NOISE_RANGE = (1e-4, 1e-3)
#: Read-noise standard deviation (full scale = 1), drawn log-uniformly: 1..5 levels of a 10-bit readout.
DEFAULT_READ_NOISE_RANGE = (1e-3, 5e-3)

#: Fraction of a photograph kept when :func:`black_out` sets the rest to true black (see there).
DEFAULT_BLACK_KEEP_RANGE = (0.3, 0.8)

# Samples of the response curve lookup table; 4096 keeps the inversion error below 1e-4.
_RESPONSE_SAMPLES = 4097


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"{name} must be (H, W, 3) RGB or (H, W, 1) grey, got shape {image.shape}.")
  if image.shape[0] < 2 or image.shape[1] < 2:
    raise ValueError(f"{name} must be at least 2x2 pixels, got {image.shape[:2]}.")
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(
      f"{name} must be a float array in [0, 1], got dtype {image.dtype}; divide uint8 by 255."
    )
  if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
    raise ValueError(
      f"{name} values must be finite and in [0, 1], got [{image.min()}, {image.max()}]."
    )
  return image.astype(np.float32, copy=False)


def _check_range(
  values: Sequence[float], name: str, low: float | None = None, high: float | None = None
):
  if len(values) != 2 or values[0] > values[1]:
    raise ValueError(f"{name} must be a (min, max) pair with min <= max, got {values}.")
  if (low is not None and values[0] < low) or (high is not None and values[1] > high):
    raise ValueError(f"{name} must lie in [{low}, {high}], got {values}.")
  return float(values[0]), float(values[1])


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur over height and width (not channels), reflecting at the borders."""
  # scipy comes with jax; imported here because importing scipy.ndimage takes about a second, which
  # the readers (same package) should not pay.
  from scipy import ndimage  # pylint: disable=import-outside-toplevel

  return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="reflect", truncate=3.0)


def random_focus_mask(
  height: int,
  width: int,
  rng: np.random.Generator,
  *,
  fraction_range: Sequence[float] = DEFAULT_MASK_FRACTION_RANGE,
  cells_range: Sequence[int] = DEFAULT_MASK_CELLS_RANGE,
) -> np.ndarray:
  """A random smooth binary region: a bicubically upsampled random field, thresholded.

  Args:
    height: mask height.
    width: mask width.
    rng: random generator.
    fraction_range: (min, max) of the fraction of pixels set; the threshold is the field's quantile.
    cells_range: (min, max) number of random control points along the short side (more = smaller blobs).

  Returns:
    float32 array (H, W, 1) of zeros and ones.
  """
  low, high = _check_range(fraction_range, "fraction_range", 0.0, 1.0)
  cells_low, cells_high = _check_range(cells_range, "cells_range", 1, None)
  cells = int(rng.integers(int(cells_low), int(cells_high) + 1))
  short = min(height, width)
  # Cells keep their aspect so blobs are round on non-square images; +1 so a blob edge can fall inside.
  grid = (max(2, round(cells * height / short)) + 1, max(2, round(cells * width / short)) + 1)
  field = rng.standard_normal(grid).astype(np.float32)
  field = np.asarray(Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC))
  fraction = rng.uniform(low, high)
  threshold = np.quantile(field, 1.0 - fraction)
  return (field > threshold).astype(np.float32)[..., None]


def black_out(
  image: np.ndarray,
  rng: np.random.Generator,
  *,
  keep_range: Sequence[float] = DEFAULT_BLACK_KEEP_RANGE,
) -> np.ndarray:
  """The photograph with random smooth regions (:func:`random_focus_mask`) set to exactly 0.

  Photographs have almost no true black, so a stage trained on exposures of photographs alone
  learns to lift dark regions; fused medical images (black backgrounds) and night scenes then come
  out grey where both sources are black. Exposures synthesised from a blacked-out photograph are
  black there too (apart from noise), and so is their reference.

  Args:
    image: (H, W, C) float in [0, 1].
    rng: random generator.
    keep_range: (min, max) fraction of pixels kept.

  Returns:
    float32 array shaped like ``image``.
  """
  image = _check_image(image)
  keep = random_focus_mask(image.shape[0], image.shape[1], rng, fraction_range=keep_range)
  return (image * keep).astype(np.float32)


def multi_focus_pair(
  image: np.ndarray,
  rng: np.random.Generator,
  *,
  sigma_range: Sequence[float] = DEFAULT_SIGMA_RANGE,
  mask_fraction_range: Sequence[float] = DEFAULT_MASK_FRACTION_RANGE,
  mask_cells_range: Sequence[int] = DEFAULT_MASK_CELLS_RANGE,
  gamma: float = DEFAULT_BLUR_GAMMA,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Synthesises a near/far multi-focus pair with complementary defocus.

  With M the random in-focus mask of the near shot and B_σ a Gaussian blur in linear light:
  near = M·I + (1−M)·B_σ1(I) (background defocused; a sharp occluding foreground keeps a crisp edge),
  far = B_σ2(M·I) + (1−B_σ2(M))·I (the defocused foreground layer, its coverage blurred too, over the
  sharp background), so the blend boundary is as soft as the defocus is strong. σ1 and σ2 are drawn
  independently because the two focus settings of a real pair defocus differently.

  Args:
    image: the sharp photograph, (H, W, 3) or (H, W, 1) float in [0, 1].
    rng: random generator; the result is a pure function of its state.
    sigma_range: (min, max) blur σ in pixels (see :data:`DEFAULT_SIGMA_RANGE`).
    mask_fraction_range: (min, max) in-focus fraction of the near shot.
    mask_cells_range: (min, max) control points of the mask field along the short side.
    gamma: display gamma used to linearise before blurring.

  Returns:
    (near, far, reference, mask): float32, the first three shaped like ``image`` in [0, 1], the
    reference being ``image`` itself; ``mask`` (H, W, 1) is 1 where the near shot is in focus.
  """
  image = _check_image(image)
  sigma_low, sigma_high = _check_range(sigma_range, "sigma_range", 0.0, None)
  if gamma <= 0:
    raise ValueError(f"gamma must be positive, got {gamma}.")
  height, width, _ = image.shape
  mask = random_focus_mask(
    height, width, rng, fraction_range=mask_fraction_range, cells_range=mask_cells_range
  )
  sigma_near, sigma_far = rng.uniform(sigma_low, sigma_high, size=2)
  linear = image.astype(np.float32) ** gamma
  near = mask * linear + (1.0 - mask) * _blur(linear, sigma_near)
  coverage = _blur(mask, sigma_far)
  far = _blur(mask * linear, sigma_far) + (1.0 - coverage) * linear
  near, far = (np.clip(x, 0.0, 1.0) ** (1.0 / gamma) for x in (near, far))
  return near.astype(np.float32), far.astype(np.float32), image.copy(), mask


def random_response_curve(
  rng: np.random.Generator,
  *,
  gamma_range: Sequence[float] = DEFAULT_RESPONSE_GAMMA_RANGE,
  contrast_range: Sequence[float] = DEFAULT_RESPONSE_CONTRAST_RANGE,
):
  """A random, strictly increasing camera response f: [0, 1] -> [0, 1] with f(0)=0, f(1)=1.

  f(x) = S(x^(1/γ)) with the tone curve S(y) = (1−s)·y + s·(3y²−2y³).

  Args:
    rng: random generator.
    gamma_range: (min, max) of γ.
    contrast_range: (min, max) of s, within [0, 1).

  Returns:
    (response, inverse): two functions mapping arrays in [0, 1] to [0, 1] (tabulated, interpolated).
  """
  gamma_low, gamma_high = _check_range(gamma_range, "gamma_range", 0.1, None)
  contrast_low, contrast_high = _check_range(contrast_range, "contrast_range", 0.0, 0.99)
  gamma = rng.uniform(gamma_low, gamma_high)
  contrast = rng.uniform(contrast_low, contrast_high)
  x = np.linspace(0.0, 1.0, _RESPONSE_SAMPLES)
  y = x ** (1.0 / gamma)
  y = (1.0 - contrast) * y + contrast * (3.0 * y**2 - 2.0 * y**3)

  def response(values):
    return np.interp(values, x, y).astype(np.float32)

  def inverse(values):
    return np.interp(values, y, x).astype(np.float32)

  return response, inverse


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
  return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def multi_exposure_pair(
  image: np.ndarray,
  rng: np.random.Generator,
  *,
  under_ev: Sequence[float] = DEFAULT_UNDER_EV,
  over_ev: Sequence[float] = DEFAULT_OVER_EV,
  response_gamma_range: Sequence[float] = DEFAULT_RESPONSE_GAMMA_RANGE,
  response_contrast_range: Sequence[float] = DEFAULT_RESPONSE_CONTRAST_RANGE,
  shot_noise_range: Sequence[float] = DEFAULT_SHOT_NOISE_RANGE,
  read_noise_range: Sequence[float] = DEFAULT_READ_NOISE_RANGE,
  quantize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Synthesises an under/over-exposed pair of a well-exposed photograph.

  One response curve f per pair (a bracketed pair comes from one camera); the photograph is taken as
  f(L) of a linear scene L = f⁻¹(I), which makes the exposures bracket the reference pixel by pixel
  before noise. Each shot: L·2^EV, plus Gaussian noise of variance a·signal + r² (shot and read
  noise), clipped to [0, 1] (saturation), f, and rounded to 8-bit levels when ``quantize``.

  Args:
    image: the reference photograph, (H, W, 3) or (H, W, 1) float in [0, 1].
    rng: random generator; the result is a pure function of its state.
    under_ev: (min, max) exposure value of the under-exposed shot, negative.
    over_ev: (min, max) exposure value of the over-exposed shot, positive.
    response_gamma_range: (min, max) γ of the response curve.
    response_contrast_range: (min, max) S-curve strength of the response curve.
    shot_noise_range: (min, max) shot-noise variance per unit signal, log-uniform.
    read_noise_range: (min, max) read-noise standard deviation, log-uniform.
    quantize: round to 1/255 steps, as the 8-bit sources of the test sets are.

  Returns:
    (under, over, reference): float32 arrays shaped like ``image`` in [0, 1]; reference is ``image``.
  """
  image = _check_image(image)
  shoot, under_bounds, over_bounds = _camera(
    image,
    rng,
    under_ev=under_ev,
    over_ev=over_ev,
    response_gamma_range=response_gamma_range,
    response_contrast_range=response_contrast_range,
    shot_noise_range=shot_noise_range,
    read_noise_range=read_noise_range,
    quantize=quantize,
  )
  # Each shot's exposure value is drawn just before its noise.
  under, over = (shoot(rng.uniform(*bounds)) for bounds in (under_bounds, over_bounds))
  return under, over, image.copy()


def _camera(
  image: np.ndarray,
  rng: np.random.Generator,
  *,
  under_ev: Sequence[float] = DEFAULT_UNDER_EV,
  over_ev: Sequence[float] = DEFAULT_OVER_EV,
  response_gamma_range: Sequence[float] = DEFAULT_RESPONSE_GAMMA_RANGE,
  response_contrast_range: Sequence[float] = DEFAULT_RESPONSE_CONTRAST_RANGE,
  shot_noise_range: Sequence[float] = DEFAULT_SHOT_NOISE_RANGE,
  read_noise_range: Sequence[float] = DEFAULT_READ_NOISE_RANGE,
  quantize: bool = True,
):
  """Checks the settings, draws one camera (response curve, noise levels) for a bracketed sequence
  of ``image`` and returns ``(shoot, under bounds, over bounds)``, ``shoot(ev)`` taking one shot."""
  under_bounds = _check_range(under_ev, "under_ev", None, 0.0)
  over_bounds = _check_range(over_ev, "over_ev", 0.0, None)
  shot_bounds = _check_range(shot_noise_range, "shot_noise_range", 1e-12, None)
  read_bounds = _check_range(read_noise_range, "read_noise_range", 1e-12, None)
  response, inverse = random_response_curve(
    rng, gamma_range=response_gamma_range, contrast_range=response_contrast_range
  )
  linear = inverse(image)
  shot = _log_uniform(rng, shot_bounds)
  read = _log_uniform(rng, read_bounds)

  def shoot(ev: float) -> np.ndarray:
    exposed = linear * np.float32(2.0**ev)
    noise = np.sqrt(shot * exposed + read**2) * rng.standard_normal(image.shape, dtype=np.float32)
    shot_image = response(np.clip(exposed + noise, 0.0, 1.0))
    if quantize:
      shot_image = np.round(shot_image * 255.0) / 255.0
    return shot_image.astype(np.float32)

  return shoot, under_bounds, over_bounds


def exposure_stack(
  image: np.ndarray, rng: np.random.Generator, num_shots: int, **camera
) -> tuple[list[np.ndarray], np.ndarray]:
  """A bracketed sequence of ``num_shots`` exposures of a well-exposed photograph.

  The camera model of :func:`multi_exposure_pair` (one response curve and one noise level per
  sequence); the darkest shot's exposure value is drawn from ``under_ev``, the brightest's from
  ``over_ev``, and the others are spaced evenly between them.

  Args:
    image: the reference photograph, (H, W, 3) or (H, W, 1) float in [0, 1].
    rng: random generator; the result is a pure function of its state.
    num_shots: length of the sequence, at least 2.
    **camera: the camera settings of :func:`multi_exposure_pair` (``under_ev``, ``over_ev``,
      ``response_gamma_range``, ``response_contrast_range``, ``shot_noise_range``,
      ``read_noise_range``, ``quantize``).

  Returns:
    (shots from darkest to brightest, reference); the reference is ``image``.
  """
  if num_shots < 2:
    raise ValueError(f"num_shots must be at least 2, got {num_shots}")
  image = _check_image(image)
  shoot, under_bounds, over_bounds = _camera(image, rng, **camera)
  evs = np.linspace(rng.uniform(*under_bounds), rng.uniform(*over_bounds), num_shots)
  return [shoot(ev) for ev in evs], image.copy()
