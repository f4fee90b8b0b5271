"""Visual information fidelity: pixel-domain multi-scale VIF (VIFP) and its fusion form."""

from __future__ import annotations

import numpy as np

from fusionjax.metrics._filters import filter_valid, gaussian_window, separable_valid, strip_rows
from fusionjax.metrics._inputs import Evaluation, prepare, prepare_pair, two_sources
from fusionjax.metrics._result import MetricResult, defined, undefined

# Variance of the visual noise of the HVS model (Sheikh & Bovik's vifp_mscale.m).
_NOISE_VARIANCE = 2.0
# Threshold below which local variances count as zero (Sheikh & Bovik's code).
_TINY = 1e-10
_SCALES = 4
# Scale s = 1..4 uses an N x N Gaussian window, N = 2^(5 - s) + 1 (17, 9, 5, 3), sigma = N / 5.
_SIZES = tuple(2 ** (_SCALES - s + 1) + 1 for s in range(1, _SCALES + 1))
_WINDOWS = tuple(gaussian_window(size, size / 5) for size in _SIZES)


def _smallest_side() -> int:
  # Smallest side for which every scale keeps at least one 'valid' pixel.
  side = 1
  while True:
    size = side
    fits = size >= len(_WINDOWS[0])
    for window in _WINDOWS[1:]:
      size = -(-(size - len(window) + 1) // 2)  # filter 'valid', keep every second pixel
      fits = fits and size >= len(window)
    if fits:
      return side
    side += 1


#: Smallest image side VIF is defined for (41: windows 17, 9, 5, 3 over four scales).
MIN_VIF_SIZE = _smallest_side()
# Images are shifted before products are formed; covariances do not depend on the shift.
_OFFSET = 127.5


def _pyramid(image: np.ndarray) -> list[np.ndarray]:
  # Scale s > 1: filter with scale s's window ('valid'), keep every second row and column.
  levels = [image - _OFFSET]
  for window in _WINDOWS[1:]:
    levels.append(filter_valid(levels[-1], window, step=2))
  return levels


def _information_terms(
  reference, distorted, distorted_mean, distorted_var, distorted_informative, window
):
  # Numerator (information the distorted image keeps) and denominator (information in the
  # reference) of one strip, as in vifp_mscale.m. Its edge cases (a flat reference or
  # distorted patch, a negative gain: gain 0; noise at least 1e-10) all zero the numerator
  # term, so they become one mask. Natural logs: the base cancels in the ratio.
  mu1 = separable_valid(reference, window)
  sigma1_sq = separable_valid(reference * reference, window)
  sigma1_sq -= mu1 * mu1
  sigma12 = separable_valid(reference * distorted, window)
  sigma12 -= mu1 * distorted_mean
  informative = sigma1_sq >= _TINY  # negative variances (rounding) are flat too
  sigma1_sq *= informative
  keep = informative & distorted_informative & (sigma12 >= 0)
  gain = sigma12 / (sigma1_sq + _TINY)
  noise = distorted_var - gain * sigma12
  np.maximum(noise, _TINY, out=noise)
  noise += _NOISE_VARIANCE
  gain *= gain
  gain *= sigma1_sq
  gain /= noise
  gain *= keep
  gain += 1
  numerator = float(np.sum(np.log(gain, out=gain)))
  sigma1_sq *= 1 / _NOISE_VARIANCE
  sigma1_sq += 1
  denominator = float(np.sum(np.log(sigma1_sq, out=sigma1_sq)))
  return numerator, denominator


def _vif_terms(distorted: np.ndarray, references: list[np.ndarray]) -> list[MetricResult]:
  # VIF(reference, distorted) for each reference; the distorted image's statistics are shared.
  height, width = distorted.shape
  if min(height, width) < MIN_VIF_SIZE:
    reason = (
      f"VIF needs at least {MIN_VIF_SIZE} px on the short side (4 scales), got {height}x{width}."
    )
    return [undefined(reason)] * len(references)
  distorted_levels = _pyramid(distorted)
  reference_levels = [_pyramid(reference) for reference in references]
  numerators = [0.0] * len(references)
  denominators = [0.0] * len(references)
  for scale, window in enumerate(_WINDOWS):
    n = len(window)
    level_height, level_width = distorted_levels[scale].shape
    rows = level_height - n + 1
    step = strip_rows(level_width)
    for start in range(0, rows, step):
      block = slice(start, min(start + step, rows) + n - 1)
      dist = distorted_levels[scale][block]
      mu2 = separable_valid(dist, window)
      sigma2_sq = separable_valid(dist * dist, window)
      sigma2_sq -= mu2 * mu2
      np.maximum(sigma2_sq, 0.0, out=sigma2_sq)
      informative = sigma2_sq >= _TINY
      for k, levels in enumerate(reference_levels):
        numerator, denominator = _information_terms(
          levels[scale][block], dist, mu2, sigma2_sq, informative, window
        )
        numerators[k] += numerator
        denominators[k] += denominator
  results = []
  for numerator, denominator in zip(numerators, denominators):
    if denominator == 0:
      results.append(
        undefined("VIF is undefined: the reference image is flat (no information to preserve).")
      )
    else:
      results.append(defined(numerator / denominator))
  return results


def vif(reference, distorted) -> MetricResult:
  """VIFP: pixel-domain visual information fidelity (Sheikh & Bovik, IEEE TIP 15(2), 2006).

  Over 4 scales (scale s: Gaussian window N = 2^(5-s) + 1, sigma N/5, 'valid'; scales 2-4 are
  the previous scale filtered with that window and decimated by 2), with local variances
  sigma_1^2 (reference), sigma_2^2 (distorted), covariance sigma_12, gain g = sigma_12 / sigma_1^2
  and distortion noise sigma_v^2 = sigma_2^2 - g sigma_12:
  VIF = sum log10(1 + g^2 sigma_1^2 / (sigma_v^2 + sigma_n^2)) / sum log10(1 + sigma_1^2 / sigma_n^2),
  sigma_n^2 = 2, with the edge cases of Sheikh & Bovik's ``vifp_mscale.m`` (variances below 1e-10
  are zero, negative gains are zero). Identical images give 1 (to ~1e-10).

  Args:
    reference: 2-D grey image the information comes from, levels 0..255.
    distorted: 2-D grey image of the same shape.

  Returns:
    VIF; undefined below 41 px on the short side or for a flat reference.
  """
  workspace = prepare_pair(reference, distorted, ("reference", "distorted"))
  return _vif_terms(workspace.image(0, 1), [workspace.image(0, 0)])[0]


def fusion_vif(fused, sources) -> MetricResult:
  """Fusion VIF = VIF(A, F) + VIF(B, F): each source as reference, the fused image as distorted.

  The sum of `vif` over the two sources, the form used in fusion benchmarks (each term is 1 when
  F copies that source, and can exceed 1 where F enhances its contrast). The MATLAB package behind the paper's tables uses Han et al.'s
  VIFF instead; the paper reports no VIF, so both conventions use this form.

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of exactly two source images of the same shape.

  Returns:
    The summed VIF; undefined for other than two sources, below 41 px, or for a flat source.
  """
  return _vif(prepare(fused, sources))


def _vif(evaluation: Evaluation) -> MetricResult:
  reason = two_sources(evaluation, "VIF")
  if reason is not None:
    return undefined(reason)
  terms = _vif_terms(
    evaluation.image(evaluation.fused), [evaluation.image(k) for k in evaluation.sources]
  )
  for term in terms:
    if not term.defined:
      return term
  return defined(sum(term.value for term in terms))
