"""The ``fusionjax`` command line: ``fuse``, ``metrics`` and ``export``.

- ``fusionjax fuse A B [C ...] -o OUT (--task TASK | --ckpt DIR | --exported FILE)``: one fusion
  (``--task auto`` picks the shipped stage from the sources, :mod:`fusionjax.detect`);
- ``fusionjax fuse --dirs A_DIR B_DIR [...] -o OUT_DIR --task TASK`` (or ``--dataset NAME --data_dir
  DIR``): whole folders, paired by file name (:mod:`fusionjax.batch`);
- ``fusionjax metrics FUSED A B [--reference R]``: every metric of one fused image;
- ``fusionjax export --task TASK -o FILE.jaxexport``: the stage as a StableHLO program
  (:mod:`fusionjax.export`).

``fuse`` fuses two or more registered images of one size (colour or grey, any format Pillow reads) with a
trained stage (by default the weights shipped with the package for ``--task``) and writes the
result (colour when any source is colour, see :mod:`fusionjax.inference`). User errors (missing or
unreadable files, mismatched sizes, a missing checkpoint, a checkpoint of another task) end with
exit code 2 and one message on stderr that says what to do; nothing is written then, and an
existing output file (or a source named as the output) is left untouched. Folder fusion goes on past
a pair that cannot be fused, lists the failures at the end and exits with 1 if there were any.

What reading the sources decided is said in one ``note:`` line each on stderr:

- a 16-bit source holding fewer bits (a 12-bit thermal image) is read at the depth it holds, unless
  ``--bit_depth`` says otherwise (:func:`fusionjax.imageio.read_image`);
- transparent pixels: the fused image is transparent where any source is (its alpha is the smallest
  of the sources' alphas), so content hidden under transparency never shows in the output. Formats
  without alpha (JPEG, BMP, GIF, PPM/PGM) get the fused image composited on a black background.

``train.py`` and ``evaluate.py`` are absl programs; :func:`run_absl` gives them the same conventions
(``--help`` exits 0, a bad flag exits 2 with one line). Multi-word flags are spelled with an
underscore everywhere (``--tile_size``, as absl spells them); the hyphen spellings of earlier
releases (:data:`DEPRECATED_FLAGS`) still work for one release, with a note on stderr.

This module parses the command line; the commands themselves are in :mod:`fusionjax.commands`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from fusionjax import batch
from fusionjax import imageio
from fusionjax import inference
from fusionjax import runtime
from fusionjax import tasks
from fusionjax import tiling

#: Exit code of user errors (as argparse uses for usage errors).
USAGE_ERROR = 2
#: ``--task`` value that picks the stage from the sources (:mod:`fusionjax.detect`).
AUTO = "auto"

#: The hyphen spellings ``fusionjax fuse`` took up to 0.1 -> the spelling now, the one absl uses in
#: train.py and evaluate.py. The old ones are accepted, with a note, for one release.
DEPRECATED_FLAGS = {
  "--pad-multiple": "--pad_multiple",
  "--tile-size": "--tile_size",
  "--bit-depth": "--bit_depth",
  "--no-progress": "--no_progress",
}

_TASK_HELP = (
  f"check that the checkpoint was trained for this task: {', '.join(tasks.TASKS)} "
  f"(medical fusion uses the {tasks.STAGE_OF_TASK['mif']} stage, as in the paper)"
)


_PAD_HELP = (
  "pad the inputs by reflection to a multiple of this so that images of many sizes share compiled "
  "programs (one compilation per size bucket instead of per image); this changes the result compared "
  "with exact-size fusion: slightly inside the image (a few 8-bit levels at most on the samples), more "
  "within about 16 px of the bottom and right edges, where the extra rows and columns sit. 1 gives "
  "exact-size fusion. Default: %d for --dirs/--dataset, exact for a single fusion"
  % batch.DEFAULT_PAD_MULTIPLE
)


class _Parser(argparse.ArgumentParser):
  """An argument parser whose errors are one line naming ``--help`` (exit :data:`USAGE_ERROR`),
  instead of argparse's usage block; its sub-command parsers are of the same class."""

  def error(self, message: str):
    print(f"{self.prog}: error: {message}; see {self.prog} --help.", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def build_parser() -> argparse.ArgumentParser:
  """The argument parser of the ``fusionjax`` command (sub-commands ``fuse``, ``metrics``, ``export``)."""
  parser = _Parser(prog="fusionjax", description="General image fusion with FRUFN/EFRUFN.")
  commands = parser.add_subparsers(dest="command", metavar="COMMAND")
  commands.required = True
  fuse = commands.add_parser(
    "fuse",
    help="fuse two or more registered images, or whole folders of them",
    description="Fuse two or more registered images of the same size (colour or grey). Sources in the task's "
    "order: near/far focus, under/over exposure, visible/infrared, MRI/other. More than two are "
    "fused by --sequence. With --dirs (or --dataset), fuse every pair of files with "
    "the same name stem into OUT_DIR/<stem>.png.",
  )
  fuse.add_argument("sources", nargs="*", metavar="IMAGE", help="source images (two or more)")
  fuse.add_argument(
    "-o",
    "--out",
    required=True,
    help="output image, whose suffix picks the format (e.g. fused.png); with --dirs or --dataset "
    "the output folder",
  )
  fuse.add_argument(
    "--dirs",
    nargs="+",
    metavar="DIR",
    default=None,
    help="fuse folders: two or more source folders, in the task's order; files are paired by name "
    "stem (case-insensitive, any suffix Pillow reads)",
  )
  fuse.add_argument(
    "--dataset",
    default=None,
    help="fuse the pairs of a benchmark reader of fusionjax.data (e.g. tno, lytro, mefb) found "
    "under --data_dir; the outputs are named after the pairs",
  )
  fuse.add_argument(
    "--data_dir",
    default=os.environ.get("FUSIONJAX_DATA"),
    help="with --dataset: the data root or the dataset's folder (default: $FUSIONJAX_DATA)",
  )
  fuse.add_argument(
    "--split", default=None, help="with --dataset: the split (default: the reader's)"
  )
  fuse.add_argument(
    "--overwrite",
    action="store_true",
    help="with --dirs/--dataset: fuse again the pairs whose output exists (default: skip them)",
  )
  fuse.add_argument(
    "--ckpt",
    default=None,
    help="stage workdir of a trained model (the --workdir of train.py); default: the weights "
    "shipped with fusionjax for --task",
  )
  fuse.add_argument(
    "--task",
    choices=tasks.TASKS + (AUTO,),
    default=None,
    help="the fusion task; picks the shipped stage when --ckpt is not given, else "
    + _TASK_HELP
    + "; 'auto' picks the shipped stage from the sources (colour, brightness, black "
    "background; see fusionjax.detect) and says what it picked and why",
  )
  fuse.add_argument(
    "--exported",
    default=None,
    metavar="FILE",
    help="fuse with a program written by `fusionjax export` (instead of --ckpt/--task); colour "
    "by the rule-based chroma, without ColorNet",
  )
  fuse.add_argument("--pad_multiple", type=int, default=None, metavar="M", help=_PAD_HELP)
  fuse.add_argument(
    "--tile_size",
    type=int,
    default=tiling.DEFAULT_TILE_SIZE,
    help="fuse images larger than this in overlapping tiles of at most "
    f"{tiling.DEFAULT_SPLIT_SIZE} px (default %(default)s)",
  )
  fuse.add_argument(
    "--overlap",
    type=int,
    default=tiling.DEFAULT_TILE_OVERLAP,
    help="overlap of neighbouring tiles in pixels (default %(default)s)",
  )
  fuse.add_argument(
    "--grey", action="store_true", help="write the fused luma only, even for colour sources"
  )
  fuse.add_argument(
    "--sequence",
    choices=inference.SEQUENCE_RULES,
    default=None,
    help="how more than two sources are fused: 'chain' ((A+B)+C...) or 'adjacent' (the mean of "
    "A+B, B+C, ...; pass exposures darkest first). Default: adjacent for the multi-exposure stage, "
    "chain for the others",
  )
  fuse.add_argument(
    "--bit_depth",
    type=int,
    choices=imageio.BIT_DEPTHS,
    default=None,
    help="bits of data in 16-bit grey sources (e.g. 12 for many thermal cameras); default: "
    "taken from the largest value, and said in a note",
  )
  fuse.add_argument(
    "--no_progress", action="store_true", help="with --dirs/--dataset: no progress bar"
  )

  metrics = commands.add_parser(
    "metrics",
    help="score one fused image against its sources",
    description="Print every metric of one fused image (on the 8-bit BT.601 luma, as evaluate.py scores), "
    "with the reason of each undefined one.",
  )
  metrics.add_argument("fused", metavar="FUSED", help="the fused image")
  metrics.add_argument(
    "sources", nargs="+", metavar="SOURCE", help="its source images (two or more)"
  )
  metrics.add_argument(
    "--reference", default=None, help="a reference image (for PSNR and SSIM against it)"
  )
  metrics.add_argument(
    "--convention",
    choices=("clean", "paper"),
    default="clean",
    help="clean: textbook definitions (default); paper: the conventions behind the paper's "
    "tables (MI = 2 EN, MS-SSIM = Ma's 3-scale MEF MS-SSIM)",
  )
  metrics.add_argument(
    "--json", action="store_true", help="print one JSON object instead of a table"
  )

  export = commands.add_parser(
    "export",
    help="export a stage's luma fusion as a StableHLO program (jax.export)",
    description="Serialise the Y-channel fusion of a stage with its weights (jax.export, symbolic height and "
    "width), so that it runs with only jax installed: `fusionjax fuse ... --exported FILE`, or "
    "jax.export.deserialize(open(FILE, 'rb').read()).call(y1, y2) on (1, H, W, 1) float32 lumas.",
  )
  export.add_argument("-o", "--out", required=True, help="the file to write (e.g. ivf.jaxexport)")
  export.add_argument(
    "--ckpt", default=None, help="stage workdir of a trained model; default: the shipped weights"
  )
  export.add_argument(
    "--task",
    choices=tasks.TASKS,
    default=None,
    help="the fusion task; picks the shipped stage when --ckpt is not given, else " + _TASK_HELP,
  )
  return parser


def _error(message: str, command: str = "fuse") -> int:
  print(f"fusionjax {command}: error: {' '.join(message.split())}", file=sys.stderr)
  return USAGE_ERROR


def _note(message: str) -> None:
  print(f"fusionjax fuse: note: {message}", file=sys.stderr)


def _one_line(error: BaseException) -> str:
  """An error message on one line: a traceback quoted inside it (ml_collections quotes the config
  file's) is reduced to its last line, the exception itself."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  if len(lines) == 1:
    return lines[0].rstrip(".")
  last = lines[-1].lstrip(".").strip()
  last = last.split(": ", 1)[1] if re.match(r"^[A-Za-z_.]*(Error|Exception): ", last) else last
  return f"{lines[0].rstrip(':')}: {last.rstrip('.')}"


def run_absl(main: Callable[[list[str]], None], argv: Sequence[str] | None = None) -> None:
  """``absl.app.run(main)`` with this package's exit codes (for ``train.py`` and ``evaluate.py``).

  absl exits with code 1 after printing the help it was asked for and after a flag it cannot parse;
  here ``--help``, ``--helpshort``, ``--helpfull`` and ``--helpxml`` exit with 0, and a bad flag with
  :data:`USAGE_ERROR` and one line saying what was wrong.

  Args:
    main: the program's ``main(argv)``.
    argv: the command line with the program name (default ``sys.argv``).
  """
  from absl import app
  from absl import flags

  def parse(args: list[str]) -> list[str]:
    try:
      return flags.FLAGS(args)
    except flags.Error as error:
      print(
        f"{Path(args[0]).name}: error: {_one_line(error)}. Pass --helpfull to list the flags.",
        file=sys.stderr,
      )
      sys.exit(USAGE_ERROR)
    except (AttributeError, KeyError) as error:  # ml_collections: --config.<field> names no field.
      listing = " (--print_config lists them)" if "print_config" in flags.FLAGS else ""
      print(
        f"{Path(args[0]).name}: error: no config field {str(error).strip(chr(34))} to set; check the "
        f"--config.<field> flags{listing}.",
        file=sys.stderr,
      )
      sys.exit(USAGE_ERROR)
    except SystemExit as exit_:
      # Only the help flags exit while the flags are parsed, all with code 1.
      raise SystemExit(0 if exit_.code == 1 else exit_.code) from None

  app.run(main, argv=list(argv) if argv is not None else None, flags_parser=parse)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the ``fusionjax`` command.

  Args:
    argv: arguments without the program name (default ``sys.argv[1:]``).

  Returns:
    The exit code: 0 on success, 2 on user errors, 1 when some pairs of a folder fusion failed.
  """
  parser = build_parser()
  argv, respelled = _respell(sys.argv[1:] if argv is None else list(argv))
  try:
    args = parser.parse_args(argv)
  except SystemExit as exit_:
    return int(exit_.code or 0)
  runtime.configure()
  from fusionjax import commands as implementations  # It reports errors with _error and _note.

  commands = {
    "fuse": implementations.run_fuse,
    "metrics": implementations.run_metrics,
    "export": implementations.run_export,
  }
  if args.command not in commands:
    return _error(f"unknown command {args.command!r}.", args.command)
  code = commands[args.command](args)
  if code != USAGE_ERROR:  # A usage error stays one line.
    for old in respelled:
      print(
        f"fusionjax {args.command}: note: {old} is deprecated; spell it {DEPRECATED_FLAGS[old]}, as "
        "train.py and evaluate.py do (the hyphen spelling goes in the next release).",
        file=sys.stderr,
      )
  return code


def _respell(argv: list) -> tuple[list, list[str]]:
  """``argv`` with the :data:`DEPRECATED_FLAGS` spelled as now, and the old spellings met (once each)."""
  out, respelled = [], []
  for k, arg in enumerate(argv):
    if arg == "--":  # Everything after it is a positional argument.
      out.extend(argv[k:])
      break
    name, equals, value = arg.partition("=") if isinstance(arg, str) else (arg, "", "")
    if name in DEPRECATED_FLAGS:
      arg = DEPRECATED_FLAGS[name] + equals + value
      if name not in respelled:
        respelled.append(name)
    out.append(arg)
  return out, respelled


if __name__ == "__main__":
  sys.exit(main())
