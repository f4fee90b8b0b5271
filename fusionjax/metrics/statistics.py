"""Image statistics used as fusion metrics (SD, SF, AG), SCD (correlations), and PSNR against a reference."""

from __future__ import annotations

import math

import numpy as np

from fusionjax.metrics._inputs import PEAK, Evaluation, prepare, prepare_pair, two_sources
from fusionjax.metrics._result import MetricResult, defined, undefined


def standard_deviation(image) -> MetricResult:
  """SD: standard deviation of the grey levels, sqrt(mean((F - mean F)^2)) (population form).

  Contrast of the fused image (Rao, Meas. Sci. Technol. 1997, as used in fusion benchmarks).

  Args:
    image: 2-D grey image, levels 0..255.

  Returns:
    SD in grey levels; 0 for a constant image.
  """
  return _sd(prepare(image))


def _sd(evaluation: Evaluation) -> MetricResult:
  return defined(np.std(evaluation.image(evaluation.fused)))


def spatial_frequency(image) -> MetricResult:
  """SF = sqrt(RF^2 + CF^2) (Eskicioglu & Fisher, IEEE Trans. Commun. 1995).

  RF^2 = sum_{i,j>1} (F[i,j] - F[i,j-1])^2 / (M N) and CF^2 = sum_{i>1,j} (F[i,j] - F[i-1,j])^2 / (M N)
  for an M x N image: both normalised by the full pixel count, as in the usual MATLAB code.

  Args:
    image: 2-D grey image, levels 0..255.

  Returns:
    SF in grey levels; 0 for a constant image.
  """
  return _sf(prepare(image))


def _sf(evaluation: Evaluation) -> MetricResult:
  image = evaluation.image(evaluation.fused)
  row_frequency_sq = np.sum(np.diff(image, axis=1) ** 2) / image.size
  column_frequency_sq = np.sum(np.diff(image, axis=0) ** 2) / image.size
  return defined(math.sqrt(row_frequency_sq + column_frequency_sq))


def average_gradient(image) -> MetricResult:
  """AG: mean of sqrt((g_x^2 + g_y^2) / 2) with forward differences (Cui et al., Opt. Commun. 2015).

  g_x = F[i, j+1] - F[i, j] and g_y = F[i+1, j] - F[i, j], averaged over the (M-1)(N-1) pixels
  where both exist.

  Args:
    image: 2-D grey image, levels 0..255.

  Returns:
    AG in grey levels; 0 for a constant image, undefined below 2 px on a side.
  """
  return _ag(prepare(image))


def _ag(evaluation: Evaluation) -> MetricResult:
  image = evaluation.image(evaluation.fused)
  if min(image.shape) < 2:
    return undefined(f"AG needs at least 2x2 pixels for forward differences, got {image.shape}.")
  gx = image[:-1, 1:] - image[:-1, :-1]
  gy = image[1:, :-1] - image[:-1, :-1]
  return defined(np.mean(np.sqrt((gx * gx + gy * gy) / 2)))


def psnr(fused, reference) -> MetricResult:
  """PSNR against a reference: 10 log10(255^2 / MSE), MSE = mean((F - R)^2).

  Only against a reference image: fusion papers without one sometimes average the MSE to the
  sources instead, which measures closeness to the inputs rather than fidelity, so that form is
  not offered.

  Args:
    fused: 2-D grey image, levels 0..255.
    reference: 2-D reference image of the same shape.

  Returns:
    PSNR in dB; ``math.inf`` (a defined value) when the images are identical.
  """
  workspace = prepare_pair(fused, reference, ("fused", "reference"))
  return _psnr_images(workspace.image(0, 0), workspace.image(0, 1))


def _psnr_images(fused: np.ndarray, reference: np.ndarray) -> MetricResult:
  mse = float(np.mean((fused - reference) ** 2))
  if mse == 0:
    return defined(math.inf)
  return defined(10 * math.log10(PEAK**2 / mse))


def _psnr(evaluation: Evaluation) -> MetricResult:
  if evaluation.reference is None:
    return undefined("PSNR needs a reference image; none was given.")
  return _psnr_images(evaluation.image(evaluation.fused), evaluation.image(evaluation.reference))


def _corr2(a: np.ndarray, b: np.ndarray) -> float:
  a = a - a.mean()
  b = b - b.mean()
  return float(np.sum(a * b) / math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b))))


def scd(fused, sources) -> MetricResult:
  """SCD: sum of the correlations of differences (Aslantas & Bendes, AEU 69(12), 2015).

  SCD = corr2(F - B, A) + corr2(F - A, B), corr2 the Pearson correlation over all pixels
  (MATLAB ``corr2``). In [-2, 2]; F = A + B + c gives exactly 2.

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of exactly two source images of the same shape.

  Returns:
    SCD; undefined for other than two sources, or when a source or a difference image is
    constant (a correlation with zero variance).
  """
  return _scd(prepare(fused, sources))


def _scd(evaluation: Evaluation) -> MetricResult:
  reason = two_sources(evaluation, "SCD")
  if reason is not None:
    return undefined(reason)
  fused = evaluation.image(evaluation.fused)
  a, b = (evaluation.image(k) for k in evaluation.sources)
  named = {"source A": a, "source B": b, "F - B": fused - b, "F - A": fused - a}
  constant = [name for name, image in named.items() if np.ptp(image) == 0]
  if constant:
    return undefined(
      f"SCD is undefined: {', '.join(constant)} is constant, so its correlation has zero variance."
    )
  return defined(_corr2(named["F - B"], a) + _corr2(named["F - A"], b))
