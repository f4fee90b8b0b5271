"""Scoring one fused image with many metrics at once, and averaging scores over a test set."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from fusionjax.metrics import edges, information, statistics, structural, visual
from fusionjax.metrics._inputs import Evaluation, prepare
from fusionjax.metrics._local_statistics import Deferred, map_means
from fusionjax.metrics._result import MetricResult, check_convention, undefined

#: Metric names accepted by `compute_metrics`, in their reporting order.
METRIC_NAMES = (
  "EN",
  "MI",
  "SCD",
  "MS-SSIM",
  "MEF-SSIM",
  "PSNR",
  "SSIM",
  "Qabf",
  "VIF",
  "SD",
  "SF",
  "AG",
)
#: Values of `compute_metrics`' ``compare_to``.
COMPARE_TO = ("auto", "sources", "reference")


def _against_reference(evaluation: Evaluation, compare_to: str) -> bool:
  if compare_to == "auto":
    return evaluation.reference is not None
  return compare_to == "reference"


def _similarity(to_sources, to_reference, name: str):
  # SSIM-like metric against the reference or, in fusion form, the sources.
  def score(evaluation: Evaluation, convention: str, compare_to: str) -> MetricResult | Deferred:
    if not _against_reference(evaluation, compare_to):
      return to_sources(evaluation)
    if evaluation.reference is None:
      return undefined(
        f"{name} against a reference was requested, but no reference image was given."
      )
    return to_reference(evaluation)

  return score


def _ms_ssim(evaluation: Evaluation, convention: str, compare_to: str) -> MetricResult | Deferred:
  if convention == "paper":
    return structural._mef_ms_ssim(evaluation)
  return _clean_ms_ssim(evaluation, convention, compare_to)


_clean_ms_ssim = _similarity(
  structural._ms_ssim_to_sources, structural._ms_ssim_to_reference, "MS-SSIM"
)

_METRICS: dict[str, Callable[[Evaluation, str, str], MetricResult | Deferred]] = {
  "EN": lambda e, convention, compare_to: information._en(e),
  "MI": lambda e, convention, compare_to: information._mi(e, convention),
  "SCD": lambda e, convention, compare_to: statistics._scd(e),
  "MS-SSIM": _ms_ssim,
  "MEF-SSIM": lambda e, convention, compare_to: structural._mef_ssim(e),
  "PSNR": lambda e, convention, compare_to: statistics._psnr(e),
  "SSIM": _similarity(structural._ssim_to_sources, structural._ssim_to_reference, "SSIM"),
  "Qabf": lambda e, convention, compare_to: edges._qabf(e),
  "VIF": lambda e, convention, compare_to: visual._vif(e),
  "SD": lambda e, convention, compare_to: statistics._sd(e),
  "SF": lambda e, convention, compare_to: statistics._sf(e),
  "AG": lambda e, convention, compare_to: statistics._ag(e),
}


def compute_metrics(
  fused,
  sources: Sequence,
  reference=None,
  names: Iterable[str] | None = None,
  convention: str = "clean",
  compare_to: str = "auto",
) -> dict[str, MetricResult]:
  """Scores one fused image with several metrics, sharing the local statistics they have in common.

  Metrics (see each function for its formula, constants and reference): ``EN`` (`entropy`),
  ``MI`` (`mutual_information`), ``SCD`` (`scd`), ``MS-SSIM``, ``MEF-SSIM`` (`mef_ssim`,
  single scale), ``PSNR`` (`psnr`, reference only), ``SSIM``, ``Qabf`` (`qabf`), ``VIF``
  (`fusion_vif`), ``SD``, ``SF``, ``AG``.

  ``SSIM`` and, in the clean convention, ``MS-SSIM`` compare the fused image with the reference
  (`ssim`, `ms_ssim`) or, in fusion form, average over the sources (`fusion_ssim`,
  `fusion_ms_ssim`), as `compare_to` says. Conventions differ in two metrics only:
  ``convention="paper"`` reproduces the MATLAB package behind the paper's tables, where ``MI``
  is 2 EN(F) (see `mutual_information`) and ``MS-SSIM`` is Ma's 3-scale MEF-SSIM of the fused
  image against the sources (`mef_ms_ssim`, regardless of `compare_to`). ``MEF-SSIM`` stays
  single-scale in both: that package's MEF-SSIM routine is the same 3-scale function, which
  would make the paper's two columns equal, yet its Table 2 reports different values
  (FRUFN: MS-SSIM 0.8507, MEF-SSIM 0.7280).

  Args:
    fused: 2-D fused grey/Y image (H, W), uint8 or float levels 0..255.
    sources: a list or tuple of 2 or more source images of the same shape (MI, SCD, Qabf and VIF
      need exactly two and are undefined otherwise).
    reference: optional reference image of the same shape (for PSNR, and SSIM/MS-SSIM).
    names: metric names to compute (any of `METRIC_NAMES`); None computes all of them.
    convention: ``"clean"`` (default, textbook definitions) or ``"paper"``.
    compare_to: ``"auto"`` (the reference when given, else the sources), ``"sources"`` or
      ``"reference"`` (undefined without one), for SSIM and clean MS-SSIM.

  Returns:
    A dict from metric name to `MetricResult`, in the order of `names`.

  Raises:
    ValueError: an unknown name, convention or `compare_to`, or bad images (not 2-D, shapes that
      differ, values outside 0..255, NaN).
  """
  check_convention(convention)
  if compare_to not in COMPARE_TO:
    raise ValueError(f"compare_to must be one of {COMPARE_TO}, got {compare_to!r}.")
  if isinstance(names, str):
    names = [names]
  selected = list(METRIC_NAMES if names is None else names)
  unknown = [name for name in selected if name not in _METRICS]
  if unknown:
    raise ValueError(f"unknown metric name(s) {unknown}; choose from {list(METRIC_NAMES)}.")
  evaluation = prepare(fused, sources, reference)
  scores = {name: _METRICS[name](evaluation, convention, compare_to) for name in selected}
  # One pass per scale computes every local map the deferred metrics need, shared between them.
  maps = {
    key: fn
    for score in scores.values()
    if isinstance(score, Deferred)
    for key, fn in score.maps.items()
  }
  means = map_means(evaluation.workspace, maps)
  return {
    name: score.finish(means) if isinstance(score, Deferred) else score
    for name, score in scores.items()
  }


def summarize(results: Sequence[Mapping[str, MetricResult]]) -> dict[str, dict]:
  """Averages per-image metric results over a test set, skipping undefined values.

  Args:
    results: one dict per image, as returned by `compute_metrics` (values may also be plain
      numbers, or None for a missing value).

  Returns:
    For every metric name present (in `METRIC_NAMES` order, then others), a dict with ``mean``
    and ``std`` (population standard deviation) over the defined values, ``n`` the number of
    defined values and ``missing`` the number of images where it is undefined or absent. With no
    defined value, mean and std are None. An infinite value (PSNR of an exact match) makes the
    mean infinite and the std NaN.
  """
  names: list[str] = [name for name in METRIC_NAMES if any(name in r for r in results)]
  for r in results:
    names += [name for name in r if name not in names]
  summary = {}
  for name in names:
    values = []
    for r in results:
      item = r.get(name)
      value = item.value if isinstance(item, MetricResult) else item
      if value is not None:
        values.append(float(value))
    if values:
      array = np.asarray(values)
      mean = float(np.mean(array))
      std = float(np.std(array)) if np.isfinite(array).all() else math.nan
    else:
      mean = std = None
    summary[name] = {
      "mean": mean,
      "std": std,
      "n": len(values),
      "missing": len(results) - len(values),
    }
  return summary
