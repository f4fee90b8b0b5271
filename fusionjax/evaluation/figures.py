"""The comparison figure, ``compare.png``: one small bar chart per metric (matplotlib, the ``docs`` extra).

For each dataset/split/convention group of the comparison (see
:func:`fusionjax.evaluation.comparison.ranked_comparison`), one panel per metric: a horizontal bar per
method, sorted with the best on top, with its standard deviation over the pairs as a whisker and
its mean written beside it; fusionjax's own networks are drawn in colour, every other method in
grey. Without matplotlib nothing is drawn and :func:`comparison_figure` returns None.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from fusionjax import imageio
from fusionjax.evaluation import comparison
from fusionjax.evaluation import reports

_HIGHLIGHT, _OTHER = "#d95f02", "#9e9e9e"
_COLUMNS = 4


def comparison_figure(
  summaries: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, dpi: int = 80
) -> Path | None:
  """Draws ``compare.png`` atomically.

  Args:
    summaries: the evaluations to compare.
    path: the PNG to write.
    dpi: resolution (the default keeps the file small enough for a README).

  Returns:
    The written path, or None when matplotlib is not installed.
  """
  try:
    import matplotlib
  except ImportError:
    return None
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  groups = [
    (key, *comparison.ranked_comparison(group))
    for key, group in comparison._groups(summaries).items()
  ]  # pylint: disable=protected-access
  groups = [(key, names, rows) for key, names, rows in groups if names]
  if not groups:
    raise ValueError("No metric is defined for any of the evaluations; nothing to draw.")
  heights = []
  for _, names, rows in groups:
    panel = 0.9 + 0.28 * len(rows)
    heights.append(0.45 + panel * math.ceil(len(names) / _COLUMNS))
  figure = plt.figure(figsize=(3.1 * _COLUMNS, sum(heights)), dpi=dpi, layout="constrained")
  subfigures = figure.subfigures(len(groups), 1, height_ratios=heights, squeeze=False)[:, 0]
  for subfigure, ((dataset, split, convention, max_side), names, rows) in zip(subfigures, groups):
    pairs = sorted({int(r["summary"].get("num_pairs") or 0) for r in rows})
    title = (
      f"{dataset}" + (f" ({split})" if split else "") + f", {'/'.join(map(str, pairs))} pairs, "
      f"`{convention}` metrics"
      + (f", ≤ {max_side} px" if max_side else "")
      + " — larger is better, best on top; fusionjax in colour"
    )
    subfigure.suptitle(title, fontsize=10)
    axes = subfigure.subplots(math.ceil(len(names) / _COLUMNS), _COLUMNS, squeeze=False).ravel()
    for ax in axes[len(names) :]:
      ax.set_axis_off()
    for ax, name in zip(axes, names):
      entries = []
      for row in rows:
        entry = row["summary"].get("metrics", {}).get(name) or {}
        mean = reports._number(entry.get("mean"))  # pylint: disable=protected-access
        if mean is None or not math.isfinite(mean):
          continue
        std = reports._number(entry.get("std")) or 0.0  # pylint: disable=protected-access
        entries.append(
          (
            mean,
            std if math.isfinite(std) else 0.0,
            str(row["summary"].get("method")),
            comparison.is_fusionjax(row["summary"]),
          )
        )
      entries.sort(key=lambda e: e[0], reverse=comparison._better(name) > 0)  # pylint: disable=protected-access
      positions = list(range(len(entries)))[::-1]  # best at the top
      ax.barh(
        positions,
        [e[0] for e in entries],
        xerr=[e[1] for e in entries],
        color=[_HIGHLIGHT if e[3] else _OTHER for e in entries],
        height=0.7,
        error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#444444"},
      )
      ax.set_yticks(positions, [e[2] for e in entries], fontsize=7)
      for y, (mean, std, _, _) in zip(positions, entries):
        ax.text(mean + std, y, f" {mean:.3g}", va="center", fontsize=6.5)
      ax.set_title(name, fontsize=9)
      ax.tick_params(axis="x", labelsize=6.5)
      low = min(e[0] - e[1] for e in entries)
      high = max(e[0] + e[1] for e in entries)
      ax.set_xlim(min(0.0, low), high + 0.28 * (high - min(0.0, low) or 1.0))
      for side in ("top", "right"):
        ax.spines[side].set_visible(False)

  def write(tmp: str) -> None:
    figure.savefig(tmp, format="png", dpi=dpi)

  try:
    return imageio.write_atomic(path, write)
  finally:
    plt.close(figure)
