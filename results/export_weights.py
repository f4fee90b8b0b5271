r"""Copies trained stages into the package as shipped weights (``fusionjax/weights/<name>/<stage>``).

  python results/export_weights.py runs/cpu [--name efrufn_cpu] [--stages mfif,meif,ivf] [--logs results/logs]
      [--steps mfif=350,meif=400 | --best]

Each stage's latest checkpoint (or the step ``--steps`` names, or with ``--best`` the step marked
best in ``<workdir>/validation.jsonl`` by ``results/validation_curve.py``) is re-saved with its parameters (and ColorNet's), its RNG and step,
and its metadata; the optimiser state is dropped (it is only needed to resume training, and is twice
the size of the parameters). The metadata records where the stage was exported from. An existing
export is replaced only after the new one has been written and read back.

``--logs DIR`` also copies every run's training log under ``runs`` (the exported stages and the
ablation runs beside them) to ``DIR/<run>/metrics.jsonl`` with its checkpoint metadata as
``DIR/<run>/metadata.json``: the record behind the README's training curves (``docs/plot_curves.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax import checkpoints, weights  # noqa: E402

_KEEP = ("step", "params", "rng", "colornet_params")


def export_stage(workdir: Path, dest: Path, step: int | None = None) -> dict:
  """Re-saves a checkpoint of ``workdir`` (default the latest) without optimiser state at ``dest``;
  returns its metadata."""
  with checkpoints.StageCheckpointer(workdir, create=False) as source:
    state, metadata = source.restore(step)
  dropped = sorted(key for key in state if key not in _KEEP)
  state = {key: value for key, value in state.items() if key in _KEEP}
  metadata = dict(metadata, exported_from=str(Path(workdir).absolute()), exported_without=dropped)
  dest.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
  try:
    with checkpoints.StageCheckpointer(staging, max_to_keep=1) as target:
      target.save(int(metadata["step"]), state, metadata, force=True)
    loaded = checkpoints.load_fusion_model(
      staging, expected_task=metadata["task"]
    )  # Read back before replacing.
    if loaded.step != int(metadata["step"]):
      raise RuntimeError(
        f"Export of {workdir} read back step {loaded.step}, expected {metadata['step']}."
      )
    if dest.exists():
      shutil.rmtree(dest)
    staging.rename(dest)
  finally:
    if staging.exists():
      shutil.rmtree(staging)
  return metadata


def best_step(workdir: Path, parser: argparse.ArgumentParser) -> int:
  """The step marked best in ``workdir/validation.jsonl`` (written by results/validation_curve.py)."""
  path = workdir / "validation.jsonl"
  if not path.is_file():
    parser.error(f"{path} is missing; run results/validation_curve.py {workdir} first.")
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  best = [row["step"] for row in rows if row.get("best")]
  if not best:
    parser.error(f"{path} marks no best step; rerun results/validation_curve.py {workdir}.")
  return int(best[0])


def copy_logs(runs: Path, dest: Path) -> list[str]:
  """Copies ``runs/<run>/metrics.jsonl`` and the run's latest metadata to ``dest/<run>/``; returns the runs."""
  copied = []
  for run in sorted(
    p for p in runs.iterdir() if (p / "metrics.jsonl").is_file() and (p / "checkpoints").is_dir()
  ):
    target = dest / run.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "metrics.jsonl", target / "metrics.jsonl")
    metadata = checkpoints.read_metadata(run)
    (target / "metadata.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    copied.append(run.name)
  return copied


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("runs", help="folder holding one workdir per stage (runs/cpu)")
  parser.add_argument(
    "--name", default=weights.DEFAULT, help="weight-set name (default %(default)s)"
  )
  parser.add_argument("--stages", default="mfif,meif,ivf")
  parser.add_argument(
    "--logs", default=None, help="also copy every run's metrics.jsonl and metadata here"
  )
  parser.add_argument("--steps", default="", help="stage=step,... to export instead of the latest")
  parser.add_argument(
    "--best", action="store_true", help="export the best step of <workdir>/validation.jsonl"
  )
  args = parser.parse_args(argv)
  steps = {}
  for item in filter(None, args.steps.split(",")):
    stage, _, step = item.partition("=")
    if not step.isdigit():
      parser.error(f"--steps entries are stage=step, got {item!r}.")
    steps[stage] = int(step)
  for stage in args.stages.split(","):
    workdir = Path(args.runs) / stage
    if not (workdir / "checkpoints").is_dir():
      parser.error(f"{workdir} has no checkpoints; train the stage first (results/train_cpu.sh).")
    if args.best and stage not in steps:
      steps[stage] = best_step(workdir, parser)
  for stage in args.stages.split(","):
    metadata = export_stage(
      Path(args.runs) / stage, weights.WEIGHTS_DIR / args.name / stage, steps.get(stage)
    )
    size = sum(
      f.stat().st_size for f in (weights.WEIGHTS_DIR / args.name / stage).rglob("*") if f.is_file()
    )
    print(
      f"{stage}: step {metadata['step']} -> {weights.WEIGHTS_DIR / args.name / stage} ({size / 1024:.0f} KiB)"
    )
  if args.logs:
    print(
      f"Training logs of {', '.join(copy_logs(Path(args.runs), Path(args.logs)))} -> {args.logs}"
    )


if __name__ == "__main__":
  main()
