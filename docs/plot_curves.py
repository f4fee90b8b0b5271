r"""Draws the training curves of a chain of stage runs (the README's training figure).

  python docs/plot_curves.py results/logs --out docs/figures/training_curves.png   # the shipped weights' runs
  python docs/plot_curves.py runs/cpu --out curves.png                              # any stage workdirs

Reads ``<runs>/<stage>/metrics.jsonl`` (written by ``train.py`` every ``log_every`` steps) for the
stages present among mfif, meif, ivf and the ablation runs meif_no_teacher and ivf_no_teacher, and
draws one panel per stage with its loss terms, plus a panel of the DEQ solver's relative residual. A
run without a teacher is drawn in its stage's panel on the terms both runs share (MEIF: 1 - SSIM; IVF:
L_int + β1 L_text + β2 L_stru), so the two can be compared.
Needs matplotlib (``pip install -e '.[docs]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax.train import logging as train_logging  # noqa: E402

STAGES = ("mfif", "meif", "ivf", "meif_no_teacher", "ivf_no_teacher")
TITLES = {
  "mfif": "Stage 1: MFIF",
  "meif": "Stage 2: MEIF (taught by MFIF)",
  "ivf": "Stage 3: IVF (taught by MEIF)",
}


def _series(records, key):
  points = [(r["step"], r[key]) for r in records if key in r]
  return [p[0] for p in points], [p[1] for p in points]


def _shared_ivf_terms(records, config):
  """L_int + β1 L_text + β2 L_stru of each record (the IVF loss without the teacher's term)."""
  loss = config["loss"]
  steps, values = [], []
  for r in records:
    if {"intensity", "texture", "structure"} <= set(r):
      steps.append(r["step"])
      values.append(r["intensity"] + loss["beta1"] * r["texture"] + loss["beta2"] * r["structure"])
  return steps, values


def _metadata(run: Path) -> dict:
  """The run's metadata: ``metadata.json`` beside its log (results/logs), else its latest checkpoint's."""
  if (run / "metadata.json").is_file():
    return json.loads((run / "metadata.json").read_text())
  from fusionjax import checkpoints

  return checkpoints.read_metadata(run)


def plot(runs: Path, out: Path) -> Path:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = {
    s: train_logging.read_metrics(runs / s)
    for s in STAGES
    if (runs / s / "metrics.jsonl").is_file()
  }
  if not records:
    raise FileNotFoundError(
      f"No <stage>/metrics.jsonl under {runs}; pass the folder that holds the stage runs."
    )
  fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
  if "mfif" in records:
    axes[0].plot(*_series(records["mfif"], "ssim_loss"), label="1 - SSIM (eq. 2)")
  if "meif" in records:
    for key, label in (
      ("ssim_loss", "1 - SSIM vs reference"),
      ("gradient_transfer", "L_gt (teacher)"),
      ("color", "ColorNet L1"),
    ):
      axes[1].plot(*_series(records["meif"], key), label=label)
  if "meif_no_teacher" in records:
    axes[1].plot(
      *_series(records["meif_no_teacher"], "ssim_loss"),
      "--",
      label="1 - SSIM, without teacher (ablation)",
    )
  for stage, style in (("ivf", "-"), ("ivf_no_teacher", "--")):
    if stage in records:
      config = _metadata(runs / stage)["config"]
      label = "with teacher" if stage == "ivf" else "without teacher (ablation)"
      axes[2].plot(
        *_shared_ivf_terms(records[stage], config),
        style,
        label=f"L_int + β1 L_text + β2 L_stru, {label}",
      )
  if "ivf" in records:
    axes[2].plot(*_series(records["ivf"], "gradient_transfer"), ":", label="L_gt (teacher)")
  for stage in records:
    axes[3].plot(*_series(records[stage], "deq_rel_residual"), label=stage)
  axes[3].set_yscale("log")
  for ax, title in zip(
    axes, [TITLES["mfif"], TITLES["meif"], TITLES["ivf"], "DEQ relative residual (last iterate)"]
  ):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=7)
  fig.tight_layout()
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("runs", help="folder with one workdir per stage (e.g. runs/cpu)")
  parser.add_argument("--out", default="docs/figures/training_curves.png")
  args = parser.parse_args(argv)
  print(f"Wrote {plot(Path(args.runs), Path(args.out))}")


if __name__ == "__main__":
  main()
