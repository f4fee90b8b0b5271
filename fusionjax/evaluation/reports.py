"""Writing evaluation results: the per-image CSV, ``summary.json``, Markdown tables.

Comparisons of several evaluations are in :mod:`fusionjax.evaluation.comparison`.

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
