"""The width curve of results/width_curve.sh: validation quality against training time per width.

  python results/width_curve.py runs/width [--out results/validation/width_curve.md]
      [--figure docs/figures/width_curve.png]

Reads ``RUNS/w<W>/metrics.jsonl`` (the trainer's log: steps/s per logging interval) and
``RUNS/validation_mfif.jsonl`` (``results/validation_curve.py``: SSIM and PSNR of every checkpoint on
the held-back validation pairs). A checkpoint's time is the sum of the logged intervals up to its
step, i.e. the run's wall time from its first step (compilation included, start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def elapsed_seconds(metrics_path: Path) -> dict[int, float]:
  """Step -> seconds since the run started, from the logged steps/s of every interval."""
  total, last, elapsed = 0.0, 0, {0: 0.0}
  for line in metrics_path.read_text().splitlines():
    row = json.loads(line)
    step, rate = int(row["step"]), float(row.get("steps_per_sec") or 0.0)
    if rate > 0 and step > last:
      total += (step - last) / rate
    elapsed[step], last = total, step
  return elapsed


def seconds_at(elapsed: dict[int, float], step: int) -> float:
  """The logged time of ``step``, interpolated between logged steps."""
  if step in elapsed:
    return elapsed[step]
  below = max(s for s in elapsed if s < step)
  above = [s for s in elapsed if s > step]
  if not above:
    return elapsed[below]
  above = min(above)
  share = (step - below) / (above - below)
  return elapsed[below] + share * (elapsed[above] - elapsed[below])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("runs_dir", help="RUNS_DIR of results/width_curve.sh")
  parser.add_argument("--out", default=None, help="also write the Markdown table here")
  parser.add_argument("--figure", default=None, help="also draw the curve into this PNG")
  args = parser.parse_args(argv)
  runs_dir = Path(args.runs_dir)
  rows = [
    json.loads(line) for line in (runs_dir / "validation_mfif.jsonl").read_text().splitlines()
  ]
  curves: dict[int, list[tuple[int, float, float, float]]] = {}
  for row in rows:
    match = re.search(r"w(\d+)$", row["run"].rstrip("/"))
    if match is None:
      continue
    width = int(match.group(1))
    elapsed = elapsed_seconds(runs_dir / f"w{width}" / "metrics.jsonl")
    point = (row["step"], seconds_at(elapsed, row["step"]), row["SSIM"], row["PSNR"])
    curves.setdefault(width, []).append(point)
  lines = [
    "MFIF stage from scratch at each width, about the same training time each "
    f"(`bash results/width_curve.sh DATA RUNS_DIR`, logs in `{runs_dir}`); validation SSIM / PSNR of every checkpoint "
    "on the held-back synthetic pairs; time = logged training wall time up to the step.",
    "",
    "| width | step | minutes | val SSIM | val PSNR |",
    "|---:|---:|---:|---:|---:|",
  ]
  for width in sorted(curves):
    for step, seconds, ssim, psnr in sorted(curves[width]):
      lines.append(f"| {width} | {step} | {seconds / 60:.1f} | {ssim:.4f} | {psnr:.2f} |")
  lines += ["", "| width | best step | minutes | best val SSIM |", "|---:|---:|---:|---:|"]
  for width in sorted(curves):
    step, seconds, ssim, _ = max(curves[width], key=lambda p: p[2])
    lines.append(f"| {width} | {step} | {seconds / 60:.1f} | {ssim:.4f} |")
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    Path(args.out).write_text(text)
  if args.figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for width in sorted(curves):
      points = sorted(curves[width])
      ax.plot([p[1] / 60 for p in points], [p[2] for p in points], "o-", label=f"width {width}")
    ax.set_xlabel("training wall time on this CPU (min)")
    ax.set_ylabel("validation SSIM (MFIF)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.figure, dpi=120)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
