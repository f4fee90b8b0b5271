r"""Time to score each benchmark set with all twelve metrics, in both metric conventions.

The fused image of every pair is the per-pixel average of the sources (``--method average`` of
evaluate.py), so the timing covers the metrics alone, not a network. Each set is read once; the
table gives the read time and, per convention, the total and per-image time of
:func:`fusionjax.evaluation.score_image` (8-bit luma conversion plus ``compute_metrics``), and the
set's mean EN and Qabf as a check that the two conventions saw the same images.

  python benchmarks/metrics_benchmark.py --data_dir /path/to/data [--sets tno,lytro] [--max_pairs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from fusionjax import data
from fusionjax import evaluation
from fusionjax import metrics

#: (label, dataset, split) of the sets the paper evaluates on, in the paper's order.
SETS = (
  ("TNO-42", "tno", None),
  ("RoadScene-50", "roadscene", "test"),
  ("Lytro-20", "lytro", None),
  ("MFI-WHU-30", "mfi_whu", "benchmark30"),
  ("MEFB-100", "mefb", None),
  ("Harvard MRI-CT", "harvard_mri_ct", None),
  ("Harvard MRI-SPECT", "harvard_mri_spect", None),
)


def benchmark_set(dataset: str, data_dir: str, split: str | None, max_pairs: int | None) -> dict:
  """Reads one set, fuses each pair by averaging and times scoring in both conventions.

  Args:
    dataset: a ``fusionjax.data.DATASETS`` key.
    data_dir: the data root.
    split: the split (None for the reader's default).
    max_pairs: only the first N pairs.

  Returns:
    ``{"pairs", "pixels_min", "pixels_max", "read_s", "<convention>_s", "<convention>_en",
    "<convention>_qabf"}``.
  """
  start = time.perf_counter()
  pairs = data.list_pairs(dataset, data_dir, split=split)[:max_pairs]
  loaded = [data.load_pair(pair) for pair in pairs]
  fused = [evaluation.average_fusion(item.sources) for item in loaded]
  row = {
    "pairs": len(pairs),
    "read_s": time.perf_counter() - start,
    "pixels_min": min(f.shape[0] * f.shape[1] for f in fused),
    "pixels_max": max(f.shape[0] * f.shape[1] for f in fused),
    "side_min": min(min(f.shape[:2]) for f in fused),
    "side_max": max(max(f.shape[:2]) for f in fused),
  }
  for convention in metrics.CONVENTIONS:
    start = time.perf_counter()
    scores = [
      evaluation.score_image(f, item.sources, item.reference, convention=convention)
      for f, item in zip(fused, loaded)
    ]
    row[f"{convention}_s"] = time.perf_counter() - start
    for name in ("EN", "Qabf"):
      values = [s[name].value for s in scores if s[name].value is not None]
      row[f"{convention}_{name.lower()}"] = float(np.mean(values)) if values else float("nan")
  return row


def markdown_table(rows: list[tuple[str, dict]]) -> str:
  """The benchmark as a Markdown table."""
  lines = [
    "| Set | Pairs | Image side (px) | Read + average (s) | Clean: total (s) | Clean: per image (ms) | "
    "Paper: total (s) | Paper: per image (ms) | EN | Qabf |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for label, r in rows:
    n = max(r["pairs"], 1)
    lines.append(
      f"| {label} | {r['pairs']} | {r['side_min']}–{r['side_max']} | {r['read_s']:.1f} | "
      f"{r['clean_s']:.1f} | {1000 * r['clean_s'] / n:.0f} | {r['paper_s']:.1f} | "
      f"{1000 * r['paper_s'] / n:.0f} | {r['clean_en']:.3f} | {r['clean_qabf']:.3f} |"
    )
  return "\n".join(lines)


def main(argv=None) -> int:
  """Runs the benchmark and prints the table (and writes it with ``--out``)."""
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--data_dir",
    default=os.environ.get("FUSIONJAX_DATA"),
    help="data root holding tno/, roadscene/, lytro/, ... (default: $FUSIONJAX_DATA)",
  )
  parser.add_argument(
    "--sets",
    default=",".join(d for _, d, _ in SETS),
    help="comma-separated dataset keys (default: all seven sets)",
  )
  parser.add_argument(
    "--max_pairs", type=int, default=None, help="only the first N pairs of each set"
  )
  parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
  args = parser.parse_args(argv)
  if not args.data_dir:
    parser.error(
      "pass --data_dir (or set FUSIONJAX_DATA) with the folder holding the benchmark sets"
    )
  wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
  known = {d for _, d, _ in SETS}
  unknown = [s for s in wanted if s not in known]
  if unknown:
    parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
  rows = []
  for label, dataset, split in SETS:
    if dataset not in wanted:
      continue
    row = benchmark_set(dataset, args.data_dir, split, args.max_pairs)
    rows.append((label, row))
    print(
      f"{label}: {row['pairs']} pairs, clean {row['clean_s']:.1f} s, paper {row['paper_s']:.1f} s",
      file=sys.stderr,
      flush=True,
    )
  cpus = os.cpu_count()
  text = (
    f"Metric scoring time, all 12 metrics, per-pixel average as the fused image "
    f"({platform.processor() or platform.machine()}, {cpus} CPUs visible, numpy {np.__version__}).\n\n"
    + markdown_table(rows)
    + "\n"
  )
  print(text)
  if args.out:
    evaluation.reports.write_text_atomic(args.out, text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
