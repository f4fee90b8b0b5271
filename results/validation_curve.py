"""Scores every checkpoint of training runs on their validation split, and optional baselines.

  python results/validation_curve.py runs/ft/mfif [runs/ft/mfif_b ...] --data_dir DATA \
      [--baseline shipped] [--data black_out_fraction=0] [--out results/validation/mfif.md]

Every run must be of one task and have been trained with ``config.data.holdout_every > 0`` (or pass
``--holdout_every``): the validation examples are built from what that setting held back
(:mod:`fusionjax.train.validation`), with the first run's data settings (``--data KEY=VALUE`` changes
one of them, e.g. to compare runs trained on different synthesis settings on examples made without
any of them). ``--baseline`` adds stages
scored on the same examples (``shipped`` = the package's weights for the task, or any stage
workdir). Writes a Markdown table (one row per run and step, the best step of each run marked) and
the same rows as JSON lines beside it. A run scored on its own validation examples (its own data
settings, no ``--data``, ``--holdout_every``, ``--num_examples`` or ``--patch_size``) and on all its
checkpoints also gets its rows in ``<workdir>/validation.jsonl``, which
``results/export_weights.py --best`` reads; scores on other examples leave that file alone.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusionjax import runtime  # noqa: E402


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("runs", nargs="+", help="training workdirs of one task")
  parser.add_argument("--data_dir", required=True, help="the data root the runs were trained on")
  parser.add_argument(
    "--baseline", action="append", default=[], help="'shipped' or a stage workdir"
  )
  parser.add_argument(
    "--data",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a config.data field for the validation examples (a Python literal)",
  )
  parser.add_argument("--holdout_every", type=int, default=None)
  parser.add_argument("--num_examples", type=int, default=None)
  parser.add_argument("--patch_size", type=int, default=None)
  parser.add_argument("--steps", default=None, help="comma-separated steps (default: all saved)")
  parser.add_argument("--out", default=None, help="Markdown file (default: print only)")
  args = parser.parse_args(argv)
  runtime.configure()

  from fusionjax import checkpoints, stages
  from fusionjax.train import validation

  metas = [checkpoints.read_metadata(run) for run in args.runs]
  tasks = {meta["task"] for meta in metas}
  if len(tasks) != 1:
    parser.error(
      f"the runs belong to several tasks ({', '.join(sorted(tasks))}); pass one task's runs"
    )
  task = tasks.pop()
  data_config = dict(metas[0]["config"]["data"], data_dir=args.data_dir)
  for item in args.data:
    key, sep, value = item.partition("=")
    if not sep or key not in data_config:
      parser.error(
        f"--data {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(data_config))}"
      )
    try:
      data_config[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      parser.error(f"--data {item!r}: the value must be a Python literal (a number, string, tuple)")
  options = {
    key: value
    for key, value in (("num_examples", args.num_examples), ("patch_size", args.patch_size))
    if value is not None
  }
  batch = validation.validation_batch(
    task, data_config, holdout_every=args.holdout_every, **options
  )
  names = validation.METRICS[task]
  steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
  rows = []
  for ckpt in args.baseline:
    model = stages.load_model(None if ckpt == "shipped" else ckpt, task=task)
    rows.append(
      {"run": f"baseline {ckpt}", "step": model.step, **validation.score_model(model, batch)}
    )
    print(rows[-1], flush=True)
  own_examples = not (
    args.data
    or args.steps
    or any(v is not None for v in (args.holdout_every, args.num_examples, args.patch_size))
  )
  for run, meta in zip(args.runs, metas):
    run_rows = []
    for row in validation.score_checkpoints(run, batch, steps):
      run_rows.append({"run": run, **row})
      print(run_rows[-1], flush=True)
    best = validation.best_row(task, run_rows)
    for row in run_rows:
      row["best"] = row is best
    if own_examples and meta["config"]["data"] == metas[0]["config"]["data"]:
      with open(Path(run) / "validation.jsonl", "w") as f:
        for row in run_rows:
          f.write(json.dumps(row) + "\n")
    rows += run_rows

  primary = validation.PRIMARY[task]
  lines = [
    f"Validation of {task} ({len(batch['y1'])} held-back examples of "
    f"{batch['y1'].shape[1]} px; `holdout_every` {data_config.get('holdout_every') if args.holdout_every is None else args.holdout_every}); "
    f"best step of each run (by {primary}) in bold.",
    "",
    "| run | step | " + " | ".join(names) + " |",
    "|---|---:|" + "---:|" * len(names),
  ]
  for row in rows:
    cells = [f"{row[name]:.4f}" for name in names]
    step = f"**{row['step']}**" if row.get("best") else str(row["step"])
    lines.append(f"| {row['run']} | {step} | " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    with open(out.with_suffix(".jsonl"), "w") as f:
      for row in rows:
        f.write(json.dumps(row) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
