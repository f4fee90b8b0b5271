"""Structural similarity metrics: SSIM, MS-SSIM and MEF-SSIM (single and multi-scale).

SSIM, MS-SSIM and MEF-SSIM are means of maps of local statistics (11x11 windows, 'valid'
region); they return `Deferred` results naming those maps, which `compute_metrics` evaluates in
one strip-wise pass per scale (`fusionjax.metrics._local_statistics.map_means`), so they share
filtering.
"""

from __future__ import annotations

import functools

import numpy as np

from fusionjax.metrics._filters import WINDOW, halved_size
from fusionjax.metrics._inputs import PEAK, Evaluation, prepare, prepare_pair
from fusionjax.metrics._local_statistics import (
  Deferred,
  LocalMap,
  LocalStatistics,
  Workspace,
  resolve,
)
from fusionjax.metrics._result import MetricResult, defined, undefined

# SSIM constants (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004): C1 = (K1 L)^2, C2 = (K2 L)^2.
_K1, _K2 = 0.01, 0.03
_C1 = (_K1 * PEAK) ** 2
_C2 = (_K2 * PEAK) ** 2

#: Scale weights of MS-SSIM (Wang, Simoncelli & Bovik 2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Scale weights of Ma's multi-scale MEF-SSIM: the first three MS-SSIM weights, normalised to sum 1.
MEF_MS_SSIM_WEIGHTS = tuple(w / sum(MS_SSIM_WEIGHTS[:3]) for w in MS_SSIM_WEIGHTS[:3])

# MATLAB's eps, used by Ma's MEF-SSIM to keep the structure consistency and weights finite.
_EPS = float(np.finfo(np.float64).eps)
# Constant Ma adds to every patch norm ("to avoid instability").
_NORM_OFFSET = 0.001
# Largest exponent of the MEF-SSIM contrast weights ("equivalent to taking the maximum").
_MAX_EXPONENT = 10.0
# Below this fraction of its uncancelled size, a desired patch is rounding noise: the sources'
# structures cancel exactly, and the patch is taken as flat instead of normalising noise.
_CANCELLATION = 1e-12


# ------------------------------------------------------------------------------------- SSIM


def _ssim_terms(statistics: LocalStatistics, i: int, j: int):
  # Luminance and contrast-structure maps of Wang 2004 on one strip (shared by SSIM and MS-SSIM).
  def compute():
    mu_x = statistics.gauss_mean(i)
    mu_y = statistics.gauss_mean(j)
    luminance = (2 * mu_x * mu_y + _C1) / (mu_x * mu_x + mu_y * mu_y + _C1)
    contrast_structure = (2 * statistics.gauss_cov(i, j) + _C2) / (
      statistics.gauss_cov(i, i) + statistics.gauss_cov(j, j) + _C2
    )
    return luminance, contrast_structure

  return statistics.memo(("ssim terms", *sorted((i, j))), compute)


def _ssim_map(statistics: LocalStatistics, i: int, j: int) -> np.ndarray:
  luminance, contrast_structure = _ssim_terms(statistics, i, j)
  return luminance * contrast_structure


def _contrast_structure_map(statistics: LocalStatistics, i: int, j: int) -> np.ndarray:
  return _ssim_terms(statistics, i, j)[1]


def _ssim_pair(workspace: Workspace, i: int, j: int) -> MetricResult | Deferred:
  height, width = workspace.shape(0)
  if min(height, width) < WINDOW:
    return undefined(f"SSIM needs at least {WINDOW}x{WINDOW} pixels, got {height}x{width}.")
  key = ("ssim", 0, *sorted((i, j)))
  return Deferred({key: functools.partial(_ssim_map, i=i, j=j)}, lambda means: defined(means[key]))


def ssim(x, y) -> MetricResult:
  """SSIM of two images (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004).

  SSIM = mean over the 'valid' region of
  ((2 mu_x mu_y + C1)(2 sigma_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
  local statistics under the 11x11 Gaussian window (sigma 1.5), C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2, as Wang's reference ``ssim_index.m``. No automatic down-sampling:
  the index is taken at the images' own resolution.

  Args:
    x: 2-D grey image, levels 0..255.
    y: 2-D grey image of the same shape.

  Returns:
    SSIM (1 for identical images); undefined below 11 px on a side.
  """
  workspace = prepare_pair(x, y)
  return resolve(workspace, _ssim_pair(workspace, 0, 1))


def fusion_ssim(fused, sources) -> MetricResult:
  """Fusion SSIM: the mean of SSIM(F, S_k) over the sources (see `ssim`).

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of 2 or more source images of the same shape.

  Returns:
    The mean SSIM against the sources.
  """
  evaluation = prepare(fused, sources)
  return resolve(evaluation.workspace, _ssim_to_sources(evaluation))


def _ssim_to_sources(evaluation: Evaluation) -> MetricResult | Deferred:
  return _mean_over_sources(evaluation, _ssim_pair)


def _ssim_to_reference(evaluation: Evaluation) -> MetricResult | Deferred:
  return _ssim_pair(evaluation.workspace, evaluation.fused, evaluation.reference)


def _mean_over_sources(evaluation: Evaluation, pair_metric) -> MetricResult | Deferred:
  # Mean of a pairwise metric of the fused image with each source.
  parts = [pair_metric(evaluation.workspace, evaluation.fused, k) for k in evaluation.sources]
  for part in parts:
    if isinstance(part, MetricResult):
      return part
  maps = {key: fn for part in parts for key, fn in part.maps.items()}
  return Deferred(
    maps, lambda means: defined(np.mean([part.finish(means).value for part in parts]))
  )


# ---------------------------------------------------------------------------------- MS-SSIM


def _ms_ssim_pair(workspace: Workspace, i: int, j: int) -> MetricResult | Deferred:
  height, width = workspace.shape(0)
  scales = len(MS_SSIM_WEIGHTS)
  coarsest = min(halved_size(height, scales - 1), halved_size(width, scales - 1))
  if coarsest < WINDOW:
    return undefined(
      f"MS-SSIM needs at least 161 px on the short side (5 scales, an 11x11 window at the "
      f"coarsest), got {height}x{width}."
    )
  pair = tuple(sorted((i, j)))
  # Contrast-structure at scales 1-4, full SSIM at the fifth.
  keys = [("cs", scale, *pair) for scale in range(scales - 1)] + [("ssim", scales - 1, *pair)]
  maps = {key: functools.partial(_contrast_structure_map, i=i, j=j) for key in keys[:-1]}
  maps[keys[-1]] = functools.partial(_ssim_map, i=i, j=j)

  def finish(means):
    # Negative scale scores (anti-correlated images) count as 0, as tf.image.ssim_multiscale's relu.
    values = np.maximum(np.array([means[key] for key in keys]), 0.0)
    return defined(np.prod(values ** np.asarray(MS_SSIM_WEIGHTS)))

  return Deferred(maps, finish)


def ms_ssim(x, y) -> MetricResult:
  """MS-SSIM of two images (Wang, Simoncelli & Bovik, Asilomar 2003).

  MS-SSIM = prod_{s=1..4} cs_s^{w_s} * ssim_5^{w_5}: cs_s the mean contrast-structure term
  (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2) at scale s, ssim_5 the mean full SSIM at the
  fifth scale, weights w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). 11x11 Gaussian window
  (sigma 1.5), 'valid' region, K1 = 0.01, K2 = 0.03, L = 255; 2x2 average down-sampling with
  the last row/column repeated on odd sides; negative scale terms count as 0. This is
  ``tf.image.ssim_multiscale`` with its default arguments.

  Args:
    x: 2-D grey image, levels 0..255.
    y: 2-D grey image of the same shape.

  Returns:
    MS-SSIM (1 for identical images); undefined below 161 px on the short side, where the
    fifth scale is smaller than the window.
  """
  workspace = prepare_pair(x, y)
  return resolve(workspace, _ms_ssim_pair(workspace, 0, 1))


def fusion_ms_ssim(fused, sources) -> MetricResult:
  """Fusion MS-SSIM: the mean of MS-SSIM(F, S_k) over the sources (see `ms_ssim`).

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of 2 or more source images of the same shape.

  Returns:
    The mean MS-SSIM against the sources; undefined below 161 px on the short side.
  """
  evaluation = prepare(fused, sources)
  return resolve(evaluation.workspace, _ms_ssim_to_sources(evaluation))


def _ms_ssim_to_sources(evaluation: Evaluation) -> MetricResult | Deferred:
  return _mean_over_sources(evaluation, _ms_ssim_pair)


def _ms_ssim_to_reference(evaluation: Evaluation) -> MetricResult | Deferred:
  return _ms_ssim_pair(evaluation.workspace, evaluation.fused, evaluation.reference)


# --------------------------------------------------------------------------------- MEF-SSIM


def _mef_ssim_map(statistics: LocalStatistics, fused: int, sources: tuple[int, ...]) -> np.ndarray:
  # Quality map of Ma, Zeng & Wang (2015) on one strip, every patch at once. Per 11x11 patch,
  # x~_k = x_k - mean(x_k) (box mean), c_k = ||x~_k|| + 0.001 (contrast), and the desired patch
  # r = max_k c_k r0 / ||r0|| with r0 = sum_k w_k x~_k / c_k; the norms of r and its
  # Gaussian-weighted moments with the fused patch follow from local (co)variances of the
  # sources, so nothing loops over pixels.
  n = WINDOW * WINDOW
  count = len(sources)
  pairs = [(a, b) for a in range(count) for b in range(a + 1, count)]
  box_var = [statistics.box_cov(k, k) for k in sources]
  box_cov = {(a, b): statistics.box_cov(sources[a], sources[b]) for a, b in pairs}
  patch_norms = [np.sqrt(n * var) for var in box_var]
  contrast = [norm + _NORM_OFFSET for norm in patch_norms]

  # Structure consistency R = ||sum_k x~_k|| / sum_k ||x~_k||, mapped to the weight exponent p.
  # R cannot reach 0; above 1 it is rounding noise, which Ma's code caps at 1 - eps.
  summed = sum(box_var) + 2 * sum(box_cov.values())
  np.maximum(summed, 0.0, out=summed)
  consistency = (np.sqrt(n * summed) + _EPS) / (sum(patch_norms) + _EPS)
  np.minimum(consistency, 1 - _EPS, out=consistency)
  exponent = np.tan((np.pi / 2) * consistency)
  np.minimum(exponent, _MAX_EXPONENT, out=exponent)

  weights = [(c * (1 / WINDOW)) ** exponent + _EPS for c in contrast]
  total = sum(weights)
  coefficients = [w / (total * c) for w, c in zip(weights, contrast)]  # w_k / c_k

  uncancelled = sum(coefficients[a] ** 2 * box_var[a] for a in range(count))
  norm_sq = uncancelled + 2 * sum(
    coefficients[a] * coefficients[b] * box_cov[a, b] for a, b in pairs
  )
  norm_sq[norm_sq <= _CANCELLATION * uncancelled] = 0.0
  norm_sq *= n
  largest_contrast = functools.reduce(np.maximum, contrast)
  gain = np.divide(
    largest_contrast, np.sqrt(norm_sq), out=np.zeros_like(norm_sq), where=norm_sq > 0
  )

  # Gaussian-weighted variance of r and covariance with the fused patch (r's mean drops out).
  var_r = sum(
    coefficients[a] ** 2 * statistics.gauss_cov(sources[a], sources[a]) for a in range(count)
  )
  var_r += 2 * sum(
    coefficients[a] * coefficients[b] * statistics.gauss_cov(sources[a], sources[b])
    for a, b in pairs
  )
  var_r *= gain * gain
  cov_rf = sum(coefficients[a] * statistics.gauss_cov(sources[a], fused) for a in range(count))
  cov_rf *= 2 * gain
  cov_rf += _C2
  var_r += statistics.gauss_cov(fused, fused)
  var_r += _C2
  return np.divide(cov_rf, var_r, out=cov_rf)


def _mef_ssim_maps(
  evaluation: Evaluation, scales: int
) -> tuple[list[tuple], dict[tuple, LocalMap]]:
  sources = tuple(evaluation.sources)
  keys = [("mef", scale, evaluation.fused, sources) for scale in range(scales)]
  fn = functools.partial(_mef_ssim_map, fused=evaluation.fused, sources=sources)
  return keys, {key: fn for key in keys}


def _mef_ssim(evaluation: Evaluation) -> MetricResult | Deferred:
  height, width = evaluation.workspace.shape(0)
  if min(height, width) < WINDOW:
    return undefined(f"MEF-SSIM needs at least {WINDOW}x{WINDOW} pixels, got {height}x{width}.")
  keys, maps = _mef_ssim_maps(evaluation, 1)
  return Deferred(maps, lambda means: defined(means[keys[0]]))


def _mef_ms_ssim(evaluation: Evaluation) -> MetricResult | Deferred:
  height, width = evaluation.workspace.shape(0)
  scales = len(MEF_MS_SSIM_WEIGHTS)
  # Ma's own size rule: min(H, W) / 2^(levels - 1) must reach the window side.
  if min(height, width) / 2 ** (scales - 1) < WINDOW:
    return undefined(
      f"3-scale MEF-SSIM needs at least {WINDOW * 2 ** (scales - 1)} px on the short side, "
      f"got {height}x{width}."
    )
  keys, maps = _mef_ssim_maps(evaluation, scales)

  def finish(means):
    # Negative scale scores count as 0 (MATLAB would return a complex number).
    values = np.maximum(np.array([means[key] for key in keys]), 0.0)
    return defined(np.prod(values ** np.asarray(MEF_MS_SSIM_WEIGHTS)))

  return Deferred(maps, finish)


def mef_ssim(fused, sources) -> MetricResult:
  """MEF-SSIM, source-sequence form, single scale (Ma, Zeng & Wang, IEEE TIP 2015).

  For every 11x11 patch (box-window statistics, 'valid' region) the sources x_k give
  x~_k = x_k - mean(x_k) and contrasts c_k = ||x~_k|| + 0.001. Structure consistency
  R = ||sum_k x~_k|| / sum_k ||x~_k|| (plus MATLAB eps on both sides) sets p = min(tan(pi R / 2), 10)
  and weights w_k = (c_k / 11)^p + eps, normalised over k. The desired patch is
  r = max_k c_k * r0 / ||r0||, r0 = sum_k w_k x~_k / c_k; it carries the strongest source
  contrast and the weighted structure, and no luminance. The patch score is
  q = (2 sigma_rf + C2) / (sigma_r^2 + sigma_f^2 + C2) with Gaussian-window (11x11, sigma 1.5)
  statistics against the fused patch f and C2 = (0.03 * 255)^2; MEF-SSIM is the mean of q.
  Follows Ma's reference ``mef_ssim.m``; flat patches (local variance < 1e-7) are exactly flat,
  and a desired patch whose sources cancel exactly is flat rather than normalised noise.

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of 2 or more source images (an exposure sequence) of that shape.

  Returns:
    MEF-SSIM, at most 1; undefined below 11 px on a side.
  """
  evaluation = prepare(fused, sources)
  return resolve(evaluation.workspace, _mef_ssim(evaluation))


def mef_ms_ssim(fused, sources) -> MetricResult:
  """Ma's 3-scale MEF-SSIM: `mef_ssim` at 3 scales, combined as a weighted geometric mean.

  Q = prod_s max(Q_s, 0)^{w_s}, Q_s the single-scale MEF-SSIM at scale s, weights
  (0.0448, 0.2856, 0.3001) / 0.8305; between scales every image is 2x2-averaged with the last
  row/column repeated on odd sides (MATLAB ``imfilter(x, ones(2)/4, 'symmetric')`` then
  ``x(1:2:end, 1:2:end)``). Ma's ``mef_ms_ssim.m`` with its defaults; this is the "MS-SSIM" of
  the paper's tables (``convention="paper"``), called with the sources as the sequence.

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of 2 or more source images of the same shape.

  Returns:
    The 3-scale MEF-SSIM; undefined below 44 px on the short side (Ma's size rule).
  """
  evaluation = prepare(fused, sources)
  return resolve(evaluation.workspace, _mef_ms_ssim(evaluation))
