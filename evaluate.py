r"""Evaluates fusion results on a benchmark set: a trained stage, a baseline, or fused images on disk.

Run a trained stage (writes OUT/fused/*.png, OUT/metrics.csv, OUT/summary.json, OUT/summary.md):

  python evaluate.py --ckpt runs/ivf --dataset tno --data_dir /path/to/data --out results/efrufn_tno

``--ckpt shipped`` runs the weights that ship with fusionjax (``fusionjax/weights``), picking the stage
that serves the dataset's task.

The paper's medical protocol applies the stage-2 (MEIF) checkpoint to Harvard pairs:

  python evaluate.py --ckpt runs/meif --dataset harvard_mri_ct --data_dir /path/to/data --out results/mri_ct

Score another method's fused images (files named after the pairs, e.g. 01.png for TNO pair 01):

  python evaluate.py --fused_dir other/TNO --dataset tno --data_dir /path/to/data --out results/other_tno

Results as their authors distribute them (``lytro_01_IFCNN.jpg``, ``MFI-WHU_01_SESF.png``, ``01.bmp``):
a file-name template with ``{name}`` (the pair's name), ``{index}`` / ``{index:02d}`` (its position):

  python evaluate.py --fused_dir IFCNN/Lytro --fused_pattern 'lytro_{index:02d}_IFCNN.*' --dataset lytro ...

Every method under one folder (a subfolder per method, or a method suffix in the file names read by
``{method}``), each scored into OUT/<method>/ (reused on a rerun), compared in OUT/compare.md:

  python evaluate.py --methods_dir published/Lytro --fused_pattern 'lytro_{index:02d}_{method}.*' \
      --dataset lytro --data_dir /path/to/data --out results/lytro_methods

Built-in baselines, and a comparison of several evaluations (OUT/compare.md with ranks and
OUT/compare.png, one bar chart per metric; ``--out FILE.md`` writes the plain side-by-side table):

  python evaluate.py --method average --dataset tno --data_dir /path/to/data --out results/average_tno
  python evaluate.py --compare results/efrufn_tno,results/average_tno --out results/tno_compare

Any folders of matching file names: ``--dataset folders --dirs vis,ir [--task ivf]``. Metrics follow
the ``clean`` convention unless ``--convention paper`` is given (see fusionjax.metrics).

An ``--out`` folder that already holds results is refused unless ``--overwrite`` is given; the new
results then replace the old ones as a whole (they are written to a temporary folder beside it first).
A pair whose images cannot be read is not scored and is listed with the reason in ``metrics.csv`` and
``summary.json``; the others are scored, and the run exits with 0 unless ``--strict`` is given (then 1).
Bad input (unknown dataset, missing checkpoint or data, a damaged checkpoint) exits with 2 and one line.
"""

import os
import sys

from absl import flags

from fusionjax import cli
from fusionjax import evaluation
from fusionjax import inference
from fusionjax import tiling
from fusionjax import runtime
from fusionjax import tasks

FLAGS = flags.FLAGS

flags.DEFINE_string(
  "ckpt",
  None,
  "Stage workdir of a trained model (as written by train.py), or 'shipped' for "
  "the weights shipped with fusionjax (the stage that serves the dataset's task).",
)
flags.DEFINE_string(
  "fused_dir",
  None,
  "Folder of fused images to score, named after the pairs (or see --fused_pattern).",
)
flags.DEFINE_string(
  "fused_pattern",
  None,
  "File-name template of the fused images in --fused_dir or --methods_dir, "
  "with {name} (the pair's name), {index} or {index:02d} (its 1-based position), {method} and "
  "shell wildcards, matched case-insensitively, e.g. '{name}_IFCNN.*' or 'lytro_{index:02d}_*.jpg'.",
)
flags.DEFINE_string(
  "methods_dir",
  None,
  "Score every method under this folder (one subfolder per method, or files "
  "named <pair>_<METHOD>.* read by {method} in --fused_pattern) into --out/<method>/, reusing "
  "finished ones, and compare them (plus any --compare evaluations) in --out/compare.md.",
)
flags.DEFINE_enum("method", None, sorted(evaluation.BASELINES), "A built-in baseline to evaluate.")
flags.DEFINE_list(
  "compare",
  [],
  "Evaluation folders (or summary.json files) to compare: --out DIR gets compare.md "
  "(ranks, best marked) and compare.png; --out FILE.md the plain side-by-side table.",
)
flags.DEFINE_string("dataset", None, "Benchmark set (a fusionjax.data.DATASETS key) or 'folders'.")
flags.DEFINE_string(
  "data_dir",
  os.environ.get("FUSIONJAX_DATA"),
  "Data root, or the dataset's own folder (default: $FUSIONJAX_DATA).",
)
flags.DEFINE_string("split", None, "Dataset split (default: the reader's evaluation split).")
flags.DEFINE_list("dirs", [], "For --dataset folders: source folders, in the task's source order.")
flags.DEFINE_string("reference_dir", None, "For --dataset folders: folder of reference images.")
flags.DEFINE_enum("task", None, list(tasks.TASKS), "For --dataset folders: the task of the pairs.")
flags.DEFINE_string(
  "out",
  None,
  "Output folder (with --compare: the folder for compare.md and compare.png, or a Markdown file).",
)
flags.DEFINE_enum(
  "convention", "clean", ["clean", "paper"], "Metric convention (docs/DESIGN.md §6)."
)
flags.DEFINE_list("metrics", None, "Metrics to compute, e.g. EN,MI,SSIM (default: all).")
flags.DEFINE_integer("max_pairs", None, "Evaluate only the first N pairs.", lower_bound=1)
flags.DEFINE_integer(
  "max_side",
  None,
  "Downscale pairs with a longer side above this (quick checks only; "
  "numbers are then not comparable with published ones).",
  lower_bound=16,
)
flags.DEFINE_boolean(
  "allow_missing",
  False,
  "With --fused_dir: skip pairs without a fused file (they are "
  "listed in metrics.csv and summary.json).",
)
flags.DEFINE_boolean(
  "overwrite",
  False,
  "Replace the results already in --out, as a whole (without it such an --out is refused).",
)
flags.DEFINE_boolean(
  "strict",
  False,
  "Exit with code 1 when some pair could not be scored (unreadable or missing "
  "images); the other pairs' results are written either way.",
)
flags.DEFINE_integer(
  "tile_size", tiling.DEFAULT_TILE_SIZE, "Fuse images larger than this in tiles."
)
flags.DEFINE_integer("overlap", tiling.DEFAULT_TILE_OVERLAP, "Overlap of neighbouring tiles.")
flags.DEFINE_integer(
  "pad_multiple",
  None,
  "Pad inputs to a multiple of this (e.g. 64) so that images of many "
  "sizes share compiled shapes; results then differ slightly near the bottom/right edges.",
  lower_bound=1,
)
flags.DEFINE_enum(
  "sequence",
  None,
  list(inference.SEQUENCE_RULES),
  "How more than two sources (e.g. lytro_triple) are fused: 'chain' ((A+B)+C...) or 'adjacent' "
  "(the mean of A+B, B+C, ...). Default: adjacent for the multi-exposure stage, chain for the others.",
)
flags.DEFINE_string("name", None, "Label of the method in tables.")
flags.DEFINE_boolean("flops", True, "Measure FLOPs with XLA's cost analysis.")


def _exit(message: str, code: int) -> None:
  print(f"evaluate.py: error: {message}", file=sys.stderr)
  sys.exit(code)


def main(argv):
  """Builds the options from the flags and runs the evaluation (exit code 2 on bad input)."""
  if len(argv) > 1:
    _exit(
      f"unexpected arguments: {' '.join(argv[1:])}; every option is a --flag (see --help).",
      cli.USAGE_ERROR,
    )
  runtime.configure()
  from fusionjax.train import logging as train_logging  # pylint: disable=import-outside-toplevel

  train_logging.quiet_library_logs()  # Orbax's ~30 INFO lines per checkpoint restore.
  options = evaluation.EvalOptions(
    out=FLAGS.out,
    ckpt=FLAGS.ckpt,
    fused_dir=FLAGS.fused_dir,
    fused_pattern=FLAGS.fused_pattern,
    methods_dir=FLAGS.methods_dir,
    method=FLAGS.method,
    compare=FLAGS.compare,
    dataset=FLAGS.dataset,
    data_dir=FLAGS.data_dir,
    split=FLAGS.split,
    dirs=FLAGS.dirs,
    reference_dir=FLAGS.reference_dir,
    task=FLAGS.task,
    convention=FLAGS.convention,
    metrics=FLAGS.metrics,
    max_pairs=FLAGS.max_pairs,
    max_side=FLAGS.max_side,
    allow_missing=FLAGS.allow_missing,
    tile_size=FLAGS.tile_size,
    tile_overlap=FLAGS.overlap,
    pad_multiple=FLAGS.pad_multiple,
    sequence=FLAGS.sequence,
    name=FLAGS.name,
    measure_flops=FLAGS.flops,
    overwrite=FLAGS.overwrite,
    strict=FLAGS.strict,
  )
  try:
    result = evaluation.run_evaluation(options)
  except (ValueError, FileNotFoundError) as error:
    _exit(str(error), cli.USAGE_ERROR)
  except OSError as error:
    _exit(f"cannot write the results to {options.out}: {error}. Nothing was replaced there.", 1)
  if isinstance(result, str):
    print(result)
    return
  if isinstance(result, evaluation.MethodsRun):
    print(result.text)
    if result.failed:
      _exit(
        f"{len(result.failed)} method(s) could not be scored ({result.failed[0][0]}: {result.failed[0][1]}"
        f"{'; ...' if len(result.failed) > 1 else ''}); the others are in {options.out}.",
        1,
      )
    return
  print(evaluation.summary_markdown(result))
  unscored = result.get("unscored_pairs") or []
  if unscored and options.strict:
    shown = "; ".join(f"{u['name']}: {u['reason']}" for u in unscored[:3]) + (
      "; ..." if len(unscored) > 3 else ""
    )
    _exit(
      f"{len(unscored)} of {len(unscored) + result['num_pairs']} pairs were not scored ({shown}); the other "
      f"pairs' results are in {options.out} (--strict).",
      1,
    )


if __name__ == "__main__":
  cli.run_absl(main)
