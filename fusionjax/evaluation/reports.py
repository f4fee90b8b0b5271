"""Writing evaluation results: the per-image CSV, ``summary.json``, Markdown tables, comparisons.

A comparison of several evaluations (``evaluate.py --compare R1,R2 --out DIR``) is written as
``DIR/compare.md`` (:func:`ranked_comparison_markdown`: mean ± std, the rank of every method per
metric, best and second best marked, methods ordered by mean rank) and ``DIR/compare.png`` (one bar
chart per metric, :mod:`fusionjax.evaluation.figures`); ``--out FILE.md`` writes the plain
side-by-side table of :func:`comparison_markdown` to that file instead.

Every file is written atomically (a temporary file renamed into place), so an interrupted run never
leaves a truncated table that a later ``--compare`` would read as complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fusionjax import imageio

#: Format tag of ``summary.json``; :func:`read_summary` refuses other files.
SUMMARY_FORMAT = "fusionjax.evaluation/1"

#: The metric names of the summaries and tables, in table order (docs/DESIGN.md §6).
METRIC_ORDER = (
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


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
  """Writes ``text`` to ``path`` through a temporary file in the same folder.

  Args:
    path: destination.
    text: UTF-8 content.

  Returns:
    The written path.
  """

  def write(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
      handle.write(text)

  return imageio.write_atomic(path, write)


def _cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return (
      repr(value)
      if math.isfinite(value)
      else ("inf" if value > 0 else ("-inf" if value < 0 else "nan"))
    )
  return str(value)


def write_metrics_csv(
  rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, columns: Sequence[str] | None = None
) -> Path:
  """Writes one row per image; undefined metrics are empty cells.

  Args:
    rows: dicts of column -> value (``None`` for undefined).
    path: destination CSV.
    columns: column order; default the keys of the first row, then any others in order of appearance.

  Returns:
    The written path.
  """
  if columns is None:
    columns = []
    for row in rows:
      columns.extend(k for k in row if k not in columns)
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(columns)
  for row in rows:
    writer.writerow([_cell(row.get(c)) for c in columns])
  return write_text_atomic(path, buffer.getvalue())


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, str]]:
  """Reads a CSV written by :func:`write_metrics_csv` (cells as strings; empty for undefined)."""
  with open(path, newline="", encoding="utf-8") as handle:
    return list(csv.DictReader(handle))


def _json_safe(value: Any) -> Any:
  """Replaces non-finite floats (JSON has none) by strings and numpy scalars by Python numbers."""
  if isinstance(value, Mapping):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
  if isinstance(value, Path):
    return str(value)
  return value


def write_summary_json(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
  """Writes ``summary.json`` (non-finite numbers become the strings 'inf'/'-inf'/'nan').

  Args:
    summary: the summary dict of an evaluation.
    path: destination.

  Returns:
    The written path.
  """
  return write_text_atomic(path, json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")


def read_summary(path: str | os.PathLike) -> dict:
  """Reads an evaluation summary from ``summary.json`` or from the evaluation folder holding it.

  Args:
    path: a ``summary.json`` file or an evaluation output folder.

  Returns:
    The summary dict.

  Raises:
    FileNotFoundError: no summary there.
    ValueError: the file is not a fusionjax evaluation summary.
  """
  path = Path(path)
  if path.is_dir():
    path = path / "summary.json"
  if not path.is_file():
    raise FileNotFoundError(
      f"No evaluation summary at {path}; pass the --out folder of an evaluate.py run "
      "(it holds summary.json) or the summary.json file itself."
    )
  try:
    summary = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as error:
    raise ValueError(
      f"{path} is not valid JSON ({error}); rerun the evaluation that wrote it."
    ) from error
  if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
    raise ValueError(
      f"{path} is not a fusionjax evaluation summary (format "
      f"{summary.get('format') if isinstance(summary, dict) else None!r}, expected {SUMMARY_FORMAT!r})."
    )
  summary.setdefault("source", str(path))
  return summary


def _number(value: Any) -> float | None:
  if value is None:
    return None
  if isinstance(value, str):
    return {"inf": math.inf, "-inf": -math.inf}.get(value)
  return float(value)


def format_value(value: Any, digits: int = 4) -> str:
  """Formats a metric value for a table ('–' when undefined, '∞' for infinite PSNR)."""
  value = _number(value)
  if value is None or math.isnan(value):
    return "–"
  if math.isinf(value):
    return "∞" if value > 0 else "−∞"
  return f"{value:.{digits}f}"


def format_mean_std(entry: Mapping[str, Any] | None, digits: int = 4) -> str:
  """``mean ± std`` of a summary metric entry ('–' when absent)."""
  if not entry or _number(entry.get("mean")) is None:
    return "–"
  std = entry.get("std")
  return f"{format_value(entry['mean'], digits)} ± {format_value(std, digits)}"


def format_params(value: Any) -> str:
  """Parameter count in millions, as the paper's tables print it: 236123 -> '0.236 M'."""
  value = _number(value)
  if value is None:
    return "–"
  return "0" if value == 0 else f"{value / 1e6:.3f} M"


def format_flops(value: Any) -> str:
  """FLOP count in units of 10^9, as the paper's Table 5: 148.7e9 -> '148.71 G'."""
  value = _number(value)
  return "–" if value is None else f"{value / 1e9:.2f} G"


def _metric_names(summaries: Iterable[Mapping[str, Any]]) -> list[str]:
  present: list[str] = []
  for summary in summaries:
    for name in list(summary.get("metrics", {})) + list(summary.get("missing", {})):
      if name not in present:
        present.append(name)
  ordered = [n for n in METRIC_ORDER if n in present]
  return ordered + [n for n in present if n not in ordered]


def summary_markdown(summary: Mapping[str, Any]) -> str:
  """The Markdown report of one evaluation (``summary.md``).

  Args:
    summary: a summary dict as written to ``summary.json``.

  Returns:
    Markdown text: a metric table (mean ± std, n), the undefined metrics with their reasons, the
    model's cost (parameters, FLOPs, latency) and the checkpoint lineage.
  """
  split = f" ({summary['split']})" if summary.get("split") else ""
  lines = [f"# {summary.get('method')} on {summary.get('dataset')}{split}", ""]
  lines.append(
    f"{summary.get('num_pairs', '?')} images, `{summary.get('convention')}` metric convention"
    + (
      f", downscaled to at most {summary['options']['max_side']} px per side"
      if (summary.get("options") or {}).get("max_side")
      else ""
    )
    + "."
  )
  lines += ["", "| Metric | Mean ± std | n |", "|---|---:|---:|"]
  metrics = summary.get("metrics", {})
  for name in _metric_names([summary]):
    entry = metrics.get(name)
    lines.append(f"| {name} | {format_mean_std(entry)} | {entry.get('n', 0) if entry else 0} |")
  missing = summary.get("missing") or {}
  if missing:
    lines += ["", "Undefined metrics:", ""]
    lines += [f"- **{name}**: {reason}" for name, reason in missing.items()]
  unscored = summary.get("unscored_pairs") or []
  if unscored:
    lines += ["", f"Pairs not scored ({len(unscored)}, left out of the means above):", ""]
    lines += [f"- **{entry.get('name')}**: {entry.get('reason')}" for entry in unscored]
  model = summary.get("model")
  if model:
    lines += ["", "| Model | |", "|---|---|"]
    lines.append(f"| Parameters | {format_params(model.get('params'))} |")
    if model.get("colornet_params"):
      lines.append(f"| of which ColorNet | {format_params(model.get('colornet_params'))} |")
    if model.get("flops") is not None:
      size = model.get("flops_input_size") or ["?", "?"]
      trips = model.get("flops_while_trips")
      note = (
        f"; solver loop counted for {trips:.2f} iterations"
        if model.get("flops_while_loops") and trips
        else "; solver loop counted once"
        if model.get("flops_while_loops")
        else ""
      )
      lines.append(
        f"| FLOPs at {size[0]}×{size[1]} (XLA cost analysis{note}) | {format_flops(model['flops'])} |"
      )
    if model.get("latency_s") is not None:
      lines.append(
        f"| Latency per image ({model.get('device', '?')}, mean of {model.get('latency_n')}, "
        f"compilation excluded) | {model['latency_s']:.4f} s |"
      )
  solver = summary.get("solver")
  if solver:
    lines.append("")
    lines.append(
      f"Solver: {solver.get('mean_steps', float('nan')):.2f} iterations on average, largest relative "
      f"residual {solver.get('max_rel_residual', float('nan')):.3g}, converged on "
      f"{solver.get('converged', 0)} of {solver.get('n', 0)} images."
    )
  checkpoint = summary.get("checkpoint")
  if checkpoint:
    lineage = " ← ".join(
      f"{s.get('task')}@{s.get('step')}" for s in checkpoint.get("lineage") or []
    )
    lines += [
      "",
      f"Checkpoint: `{checkpoint.get('path')}` (task {checkpoint.get('task')}, step "
      f"{checkpoint.get('step')}); lineage {lineage or '–'}.",
    ]
  if summary.get("fused_dir"):
    lines += ["", f"Fused images scored from `{summary['fused_dir']}`."]
  return "\n".join(lines) + "\n"


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
    summaries: summary dicts (e.g. from :func:`read_summary`).

  Returns:
    Markdown text.
  """
  if not summaries:
    raise ValueError("Nothing to compare: pass at least one evaluation folder or summary.json.")
  blocks = []
  for (dataset, split, convention, max_side), group in _groups(summaries).items():
    names = _metric_names(group)
    title = f"## {dataset}" + (f" ({split})" if split else "") + f", `{convention}` metrics"
    if max_side:
      title += f", downscaled to ≤ {max_side} px"
    header = ["Method", "n"] + names + ["Params", "Latency (s)"]
    lines = [title, "", "| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(names) + 2)]
    best = {}
    for name in names:
      values = [_number((s.get("metrics", {}).get(name) or {}).get("mean")) for s in group]
      values = [v for v in values if v is not None and not math.isnan(v)]
      if len(values) > 1:
        best[name] = max(values) if _better(name) > 0 else min(values)
    for summary in group:
      cells = [str(summary.get("method")), str(summary.get("num_pairs", ""))]
      for name in names:
        entry = summary.get("metrics", {}).get(name)
        text = format_mean_std(entry)
        if entry and name in best and _number(entry.get("mean")) == best[name]:
          text = f"**{text}**"
        cells.append(text)
      model = summary.get("model") or {}
      cells.append(format_params(model.get("params")))
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
  values = [_number((s.get("metrics", {}).get(name) or {}).get("mean")) for s in group]
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
    for n in _metric_names(group)
    if any(_number((s.get("metrics", {}).get(n) or {}).get("mean")) is not None for s in group)
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
    summaries: summary dicts (e.g. from :func:`read_summary`).

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
        text = format_mean_std(summary.get("metrics", {}).get(name))
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
  write_text_atomic(out_dir / "compare.md", text)
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
  summaries = [read_summary(p) for p in paths]
  if out is not None and not (Path(out).suffix.lower() == ".md" and not Path(out).is_dir()):
    text, note = write_comparison(summaries, out)
    return text + "\n" + note + "\n"
  text = comparison_markdown(summaries)
  if out is not None:
    write_text_atomic(out, text)
  return text
