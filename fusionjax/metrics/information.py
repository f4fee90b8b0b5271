"""Information-theoretic fusion metrics: entropy (EN) and mutual information (MI).

Both count integer grey levels 0..255: float images are first rounded half up (see
`fusionjax.metrics._local_statistics.to_levels`).
"""

from __future__ import annotations

import numpy as np

from fusionjax.metrics._inputs import Evaluation, prepare, two_sources
from fusionjax.metrics._result import MetricResult, check_convention, defined, undefined

_LEVELS = 256


def entropy_of_counts(counts: np.ndarray) -> float:
  """Shannon entropy in bits of a histogram.

  Args:
    counts: non-negative bin counts of any shape.

  Returns:
    -sum p log2 p over the non-empty bins, with p = counts / counts.sum().
  """
  p = counts[counts > 0].astype(np.float64)
  p /= p.sum()
  return 0.0 - float(np.sum(p * np.log2(p)))  # 0.0 - x: a single level gives 0.0, not -0.0


def _entropy(evaluation: Evaluation, i: int) -> float:
  counts = np.bincount(evaluation.workspace.levels(i).ravel(), minlength=_LEVELS)
  return entropy_of_counts(counts)


def _mutual_information_pair(evaluation: Evaluation, i: int, j: int) -> float:
  # I(X; Y) = H(X) + H(Y) - H(X, Y) from the 256 x 256 joint histogram of grey levels.
  x = evaluation.workspace.levels(i).ravel()
  y = evaluation.workspace.levels(j).ravel()
  joint = np.bincount(x * _LEVELS + y, minlength=_LEVELS * _LEVELS)
  return _entropy(evaluation, i) + _entropy(evaluation, j) - entropy_of_counts(joint)


def entropy(image) -> MetricResult:
  """EN: Shannon entropy of the grey-level histogram.

  EN = -sum_l p_l log2 p_l over the 256 grey levels l, p_l the fraction of pixels at level l
  (Roberts, van Aardt & Ahmed, J. Appl. Remote Sens. 2008). Bits; 0 for a constant image,
  log2 k for k equally frequent levels, at most 8.

  Args:
    image: 2-D grey image, levels 0..255 (uint8, or float rounded half up).

  Returns:
    The entropy in bits.
  """
  return _en(prepare(image))


def _en(evaluation: Evaluation) -> MetricResult:
  return defined(_entropy(evaluation, evaluation.fused))


def mutual_information(fused, sources, convention: str = "clean") -> MetricResult:
  """MI: mutual information between each source and the fused image, summed.

  ``clean``: MI = I(A; F) + I(B; F), I(X; F) = H(X) + H(F) - H(X, F) in bits, from the 256-bin
  grey histograms and the 256 x 256 joint histogram (Qu, Zhang & Yan, Electron. Lett. 2002).

  ``paper``: MI = 2 EN(F). The paper's tables come from a widely copied MATLAB metric package
  whose MI passes double arrays to MATLAB's ``entropy()``; ``entropy()`` converts doubles with
  ``im2uint8``, which saturates every value >= 1 to 255, so the joint terms collapse to 0 and
  each I(X; F) degenerates to EN(F). The paper's tables show exactly this: every MI equals
  twice the EN beside it (Table 1, FRUFN: EN 7.4943, MI 14.9887; Table 7: 6.8625, 13.7251).

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of exactly two source images of the same shape (more: undefined).
    convention: ``"clean"`` (default) or ``"paper"``.

  Returns:
    MI in bits; undefined for other than two sources.
  """
  check_convention(convention)
  return _mi(prepare(fused, sources), convention)


def _mi(evaluation: Evaluation, convention: str) -> MetricResult:
  reason = two_sources(evaluation, "MI")
  if reason is not None:
    return undefined(reason)
  if convention == "paper":
    return defined(2.0 * _entropy(evaluation, evaluation.fused))
  return defined(
    sum(_mutual_information_pair(evaluation, k, evaluation.fused) for k in evaluation.sources)
  )
