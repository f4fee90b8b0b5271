"""Comparing several evaluations: side-by-side and ranked Markdown tables, and the comparison folder.

A comparison of several evaluations (``evaluate.py --compare R1,R2 --out DIR``) is written as
``DIR/compare.md`` (:func:`ranked_comparison_markdown`: mean ± std, the rank of every method per
metric, best and second best marked, methods ordered by mean rank) and ``DIR/compare.png`` (one bar
chart per metric, :mod:`fusionjax.evaluation.figures`); ``--out FILE.md`` writes the plain
side-by-side table of :func:`comparison_markdown` to that file instead.

Every file is written atomically (:func:`fusionjax.evaluation.reports.write_text_atomic`), so an
interrupted run never leaves a truncated table that a later ``--compare`` would read as complete.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from fusionjax.evaluation import reports


def _better(name: str) -> int:
  """+1 when larger is better. Every metric of docs/DESIGN.md §6 is larger-is-better."""
  del name
  return 1


def comparison_markdown(summaries: Sequence[Mapping[str, Any]]) -> str:
  """Side-by-side Markdown tables of several evaluations (one table per dataset/split/convention).

  Rows are methods, columns metrics (mean ± std), parameters and latency; the best mean of each
  column is bold. Summaries of different datasets, splits or metric conventions are never mixed in
  one table: their numbers are not comparable.

  Args:
    summaries: summary dicts (e.g. from :func:`fusionjax.evaluation.reports.read_summary`).

  Returns:
    Markdown text.
  """
  if not summaries:
    raise ValueError("Nothing to compare: pass at least one evaluation folder or summary.json.")
  blocks = []
  for (dataset, split, convention, max_side), group in _groups(summaries).items():
    names = reports._metric_names(group)
    title = f"## {dataset}" + (f" ({split})" if split else "") + f", `{convention}` metrics"
    if max_side:
      title += f", downscaled to ≤ {max_side} px"
    header = ["Method", "n"] + names + ["Params", "Latency (s)"]
    lines = [title, "", "| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(names) + 2)]
    best = {}
    for name in names:
      values = [reports._number((s.get("metrics", {}).get(name) or {}).get("mean")) for s in group]
      values = [v for v in values if v is not None and not math.isnan(v)]
      if len(values) > 1:
        best[name] = max(values) if _better(name) > 0 else min(values)
    for summary in group:
      cells = [str(summary.get("method")), str(summary.get("num_pairs", ""))]
      for name in names:
        entry = summary.get("metrics", {}).get(name)
        text = reports.format_mean_std(entry)
        if entry and name in best and reports._number(entry.get("mean")) == best[name]:
          text = f"**{text}**"
        cells.append(text)
      model = summary.get("model") or {}
      cells.append(reports.format_params(model.get("params")))
      cells.append(f"{model['latency_s']:.4f}" if model.get("latency_s") is not None else "–")
      lines.append("| " + " | ".join(cells) + " |")
    blocks.append("\n".join(lines))
  return "# Comparison\n\n" + "\n\n".join(blocks) + "\n"


def _groups(summaries: Sequence[Mapping[str, Any]]) -> dict[tuple, list]:
  """Summaries by (dataset, split, convention, max_side): only numbers of one group are comparable."""
  groups: dict[tuple, list] = {}
  for summary in summaries:
    key = (
      summary.get("dataset"),
      summary.get("split"),
      summary.get("convention"),
      (summary.get("options") or {}).get("max_side"),
    )
    groups.setdefault(key, []).append(summary)
  return groups


#: What the two metric conventions mean, for the comparison text.
CONVENTION_NOTES = {
  "clean": "textbook definitions (fusionjax.metrics): MI = MI(A,F) + MI(B,F), MS-SSIM of Wang et al. 2003",
  "paper": "the conventions behind the paper's tables: MI = 2 EN, MS-SSIM = Ma's 3-scale MEF MS-SSIM",
}


def metric_ranks(
  group: Sequence[Mapping[str, Any]], name: str, digits: int = 4
) -> list[int | None]:
  """The rank of each summary's mean of ``name`` (1 = best; None: undefined).

  Means equal at the ``digits`` decimals the tables print share the better rank.
  """
  values = [reports._number((s.get("metrics", {}).get(name) or {}).get("mean")) for s in group]
  values = [v if v is None or not math.isfinite(v) else round(v, digits) for v in values]
  defined = [v for v in values if v is not None and not math.isnan(v)]
  sign = _better(name)
  return [
    None if v is None or math.isnan(v) else 1 + sum(sign * (w - v) > 0 for w in defined)
    for v in values
  ]


def is_fusionjax(summary: Mapping[str, Any]) -> bool:
  """Whether an evaluation is fusionjax's own: it ran a checkpoint, or its label says ``fusionjax``
  (e.g. a folder of ``fusionjax fuse`` outputs scored as a method)."""
  return bool(summary.get("checkpoint")) or "fusionjax" in str(summary.get("method", "")).lower()


def ranked_comparison(group: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict]]:
  """The metrics defined for some method of a group, and one row per method ordered by mean rank.

  Returns:
    ``(metric names, rows)``; each row has ``summary``, ``ranks`` (name -> rank or None) and
    ``mean_rank`` (over the metrics it has; None if it has none).
  """
  names = [
    n
    for n in reports._metric_names(group)
    if any(
      reports._number((s.get("metrics", {}).get(n) or {}).get("mean")) is not None for s in group
    )
  ]
  ranks = {n: metric_ranks(group, n) for n in names}
  rows = []
  for k, summary in enumerate(group):
    own = {n: ranks[n][k] for n in names}
    defined = [r for r in own.values() if r is not None]
    rows.append(
      {
        "summary": summary,
        "ranks": own,
        "mean_rank": sum(defined) / len(defined) if defined else None,
      }
    )
  rows.sort(key=lambda r: math.inf if r["mean_rank"] is None else r["mean_rank"])
  return names, rows


def ranked_comparison_markdown(summaries: Sequence[Mapping[str, Any]]) -> str:
  """``compare.md``: for each dataset/split/convention, every method's mean ± std and rank per metric.

  Args:
    summaries: summary dicts (e.g. from :func:`fusionjax.evaluation.reports.read_summary`).

  Returns:
    Markdown text: a table per group with methods ordered by their mean rank over the metrics, the
    best mean of each metric in bold and the second best in italics, the convention stated, and the
    metrics undefined for every method with their reasons.
  """
  if not summaries:
    raise ValueError("Nothing to compare: pass at least one evaluation folder or summary.json.")
  blocks = []
  for (dataset, split, convention, max_side), group in _groups(summaries).items():
    names, rows = ranked_comparison(group)
    title = f"## {dataset}" + (f" ({split})" if split else "") + f", `{convention}` metrics"
    if max_side:
      title += f", downscaled to ≤ {max_side} px"
    note = (
      f"Each cell: mean ± std over the pairs a method scored (n), and its rank among the {len(group)} "
      "methods in brackets: rank 1 is the best, larger is better for every metric here, means equal to "
      "the 4 decimals shown share a rank; **bold** = best, *italic* = second best. Rows are ordered by the mean rank over the metrics. "
      f"Metric convention `{convention}`: {CONVENTION_NOTES.get(convention, 'see fusionjax.metrics')}."
    )
    lines = [
      title,
      "",
      note,
      "",
      "| Method | n | Mean rank | " + " | ".join(names) + " |",
      "|---|---:|---:|" + "---:|" * len(names),
    ]
    for row in rows:
      summary = row["summary"]
      cells = [
        str(summary.get("method"))
        + (
          " (fusionjax)"
          if is_fusionjax(summary) and "fusionjax" not in str(summary.get("method")).lower()
          else ""
        ),
        str(summary.get("num_pairs", "")),
        "–" if row["mean_rank"] is None else f"{row['mean_rank']:.2f}",
      ]
      for name in names:
        rank = row["ranks"][name]
        text = reports.format_mean_std(summary.get("metrics", {}).get(name))
        if rank is not None:
          text = f"**{text}**" if rank == 1 else f"*{text}*" if rank == 2 else text
          text += f" ({rank})"
        cells.append(text)
      lines.append("| " + " | ".join(cells) + " |")
    undefined = {}
    for summary in group:
      for name, reason in (summary.get("missing") or {}).items():
        if name not in names:
          undefined.setdefault(name, reason)
    if undefined:
      lines += [
        "",
        "Undefined for every method: "
        + "; ".join(f"{n} ({str(r).rstrip('.')})" for n, r in undefined.items())
        + ".",
      ]
    unscored = [
      f"{s.get('method')}: {s.get('num_unscored')}" for s in group if s.get("num_unscored")
    ]
    if unscored:
      lines += [
        "",
        "Pairs some method could not score (left out of its means): " + ", ".join(unscored) + ".",
      ]
    blocks.append("\n".join(lines))
  return "# Comparison\n\n" + "\n\n".join(blocks) + "\n"


def write_comparison(
  summaries: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike
) -> tuple[str, str]:
  """Writes ``out_dir/compare.md`` and, when matplotlib is installed, ``out_dir/compare.png``.

  Args:
    summaries: the evaluations to compare.
    out_dir: the folder (created when missing).

  Returns:
    ``(the Markdown text, one line saying where the figure is or why it was not drawn)``.
  """
  from fusionjax.evaluation import figures

  out_dir = Path(out_dir)
  if out_dir.exists() and not out_dir.is_dir():
    raise ValueError(
      f"--out {out_dir} is a file; pass a folder for compare.md and compare.png (or a path ending "
      "in .md for the table alone)."
    )
  if (out_dir / "summary.json").exists():
    raise ValueError(
      f"--out {out_dir} is an evaluation folder; write the comparison to another folder."
    )
  text = ranked_comparison_markdown(summaries)
  out_dir.mkdir(parents=True, exist_ok=True)
  reports.write_text_atomic(out_dir / "compare.md", text)
  figure = figures.comparison_figure(summaries, out_dir / "compare.png")
  note = (
    f"Wrote {out_dir / 'compare.md'} and {figure}."
    if figure is not None
    else f"Wrote {out_dir / 'compare.md'}; compare.png was not drawn: matplotlib is not installed "
    "(pip install -e '.[docs]')."
  )
  return text, note


def compare_summaries(
  paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None
) -> str:
  """Reads several evaluations and writes their comparison.

  Args:
    paths: evaluation output folders or ``summary.json`` files.
    out: a path ending in ``.md``: the side-by-side table of :func:`comparison_markdown` is written
      there; any other path is a folder for ``compare.md`` and ``compare.png`` (:func:`write_comparison`);
      ``None``: only return the side-by-side table.

  Returns:
    The Markdown text (for a folder, followed by the line that says where the figure is).
  """
  summaries = [reports.read_summary(p) for p in paths]
  if out is not None and not (Path(out).suffix.lower() == ".md" and not Path(out).is_dir()):
    text, note = write_comparison(summaries, out)
    return text + "\n" + note + "\n"
  text = comparison_markdown(summaries)
  if out is not None:
    reports.write_text_atomic(out, text)
  return text
