"""Scoring fused images: metric names, the 8-bit luma the metrics see, and averages over a set.

Metrics are computed on the 8-bit luma of the fused image exactly as it is written to disk (the
BT.601 Y of the rounded RGB, docs/DESIGN.md §6), and on the 8-bit luma of the sources (and of the
reference, when the pair has one): scoring a folder of fused PNGs afterwards gives the same numbers
as the run that wrote them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fusionjax import color
from fusionjax import imageio

# The BT.601 luma weights, applied to 8-bit RGB: the Y row of fusionjax.color's conversion.
_LUMA_WEIGHTS = color.rgb_to_ycrcb(np.eye(3))[:, 0]


def _metrics_module():
  from fusionjax import metrics  # Deferred: scipy-heavy, and compare needs none of it.

  return metrics


def check_metric_names(names: Sequence[str] | None) -> list[str]:
  """Validates ``--metrics`` (case-sensitive names of docs/DESIGN.md §6); ``None`` means all.

  Args:
    names: metric names or None.

  Returns:
    The list of names, in the order given.
  """
  known = list(_metrics_module().METRIC_NAMES)
  if names is None or len(names) == 0:
    return known
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in known]
  if unknown:
    lower = {k.lower(): k for k in known}
    hints = [
      f"{n} (did you mean {lower[n.lower()]}?)" if n.lower() in lower else n for n in unknown
    ]
    raise ValueError(f"Unknown metric(s): {', '.join(hints)}. Known metrics: {', '.join(known)}.")
  return names


def luma_levels(image: np.ndarray) -> np.ndarray:
  """The 8-bit luma of an image as stored on disk: (H, W) uint8.

  Colour images are rounded to 8-bit RGB first (what :func:`fusionjax.imageio.save_image` writes)
  and converted with the BT.601 weights, then rounded; grey images are rounded directly.

  Args:
    image: (H, W), (H, W, 1) or (H, W, 3) in [0, 1].

  Returns:
    uint8 array (H, W).
  """
  u8 = imageio.to_uint8(image)
  if u8.ndim == 2:
    return u8
  if u8.shape[-1] == 1:
    return u8[..., 0]
  if u8.shape[-1] != 3:
    raise ValueError(f"Expected a grey or RGB image, got shape {np.shape(image)}.")
  y = u8.astype(np.float64) @ _LUMA_WEIGHTS
  return np.clip(np.round(y), 0, 255).astype(np.uint8)


def score_image(
  fused: np.ndarray,
  sources: Sequence[np.ndarray],
  reference: np.ndarray | None = None,
  *,
  metrics: Sequence[str] | None = None,
  convention: str = "clean",
) -> dict:
  """Scores one fused image against its sources (and reference) on the 8-bit luma.

  Args:
    fused: (H, W, 1 | 3) in [0, 1].
    sources: the sources, same H x W.
    reference: the reference image, or None.
    metrics: names to compute (default all).
    convention: 'clean' or 'paper'.

  Returns:
    ``{name: MetricResult}``.
  """
  fused_y = luma_levels(fused)
  source_y = [luma_levels(s) for s in sources]
  for k, s in enumerate(source_y):
    if s.shape != fused_y.shape:
      raise ValueError(
        f"The fused image is {fused_y.shape[0]}x{fused_y.shape[1]} (HxW) but source {k + 1} is "
        f"{s.shape[0]}x{s.shape[1]}; fused images must keep the sources' size."
      )
  reference_y = luma_levels(reference) if reference is not None else None
  return _metrics_module().compute_metrics(
    fused_y,
    source_y,
    reference=reference_y,
    names=list(metrics) if metrics else None,
    convention=convention,
  )


def aggregate_results(results: list[dict], names: Sequence[str]) -> tuple[dict, dict]:
  """Per-metric mean/std/n over images, and the reasons of undefined values."""
  summary = _metrics_module().summarize(results)
  metrics, missing = {}, {}
  total = len(results)
  for name in names:
    entry = summary.get(name) or {}
    n = int(entry.get("n") or 0)
    if n > 0:
      metrics[name] = {"mean": entry.get("mean"), "std": entry.get("std"), "n": n}
    reasons: dict[str, int] = {}
    for result in results:
      value = result.get(name)
      if value is not None and value.value is None:
        reasons[value.reason] = reasons.get(value.reason, 0) + 1
    if reasons:
      undefined = sum(reasons.values())
      listed = "; ".join(reasons)
      missing[name] = (
        listed if undefined == total else f"undefined on {undefined} of {total} images: {listed}"
      )
  return metrics, missing


def metric_row(name: str, shape, result: Mapping, names: Sequence[str], extras: Mapping) -> dict:
  """One ``metrics.csv`` row: the pair's name and size (H, W), its metric values, then ``extras``."""
  row = {"name": name, "height": int(shape[0]), "width": int(shape[1])}
  for metric in names:
    value = result.get(metric)
    row[metric] = value.value if value is not None else None
  row.update(extras)
  return row
