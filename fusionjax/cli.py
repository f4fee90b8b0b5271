"""The ``fusionjax`` command line: ``fusionjax fuse A B [C ...] -o OUT (--task TASK | --ckpt DIR)``.

Fuses two or more registered images of one size (colour or grey, any format Pillow reads) with a
trained stage (by default the weights shipped with the package for ``--task``) and writes the
result (colour when any source is colour, see :mod:`fusionjax.inference`). User errors (missing or
unreadable files, mismatched sizes, a missing checkpoint, a checkpoint of another task) end with
exit code 2 and one message on stderr that says what to do; nothing is written then, and an
existing output file is left untouched.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fusionjax import imageio
from fusionjax import inference
from fusionjax import runtime

#: Exit code of user errors (as argparse uses for usage errors).
USAGE_ERROR = 2

_TASK_HELP = ("check that the checkpoint was trained for this task: mfif, meif, ivf, or mif "
              "(medical fusion uses the meif stage, as in the paper)")


def build_parser() -> argparse.ArgumentParser:
  """The argument parser of the ``fusionjax`` command (sub-command ``fuse``)."""
  parser = argparse.ArgumentParser(prog="fusionjax", description="General image fusion with FRUFN/EFRUFN.")
  commands = parser.add_subparsers(dest="command", metavar="COMMAND")
  commands.required = True
  fuse = commands.add_parser(
      "fuse", help="fuse two or more registered images",
      description="Fuse two or more registered images of the same size (colour or grey). Sources in the task's "
                  "order: near/far focus, under/over exposure, visible/infrared, MRI/other. More than two are "
                  "fused sequentially ((A+B)+C...).")
  fuse.add_argument("sources", nargs="+", metavar="IMAGE", help="source images (two or more)")
  fuse.add_argument("-o", "--out", required=True, help="output image; the suffix picks the format (e.g. fused.png)")
  fuse.add_argument("--ckpt", default=None,
                    help="stage workdir of a trained model (the --workdir of train.py); default: the weights "
                         "shipped with fusionjax for --task")
  fuse.add_argument("--task", choices=("mfif", "meif", "ivf", "mif"), default=None,
                    help="the fusion task; picks the shipped stage when --ckpt is not given, else " + _TASK_HELP)
  fuse.add_argument("--tile-size", type=int, default=inference.DEFAULT_TILE_SIZE,
                    help="fuse images larger than this in overlapping tiles (default %(default)s)")
  fuse.add_argument("--overlap", type=int, default=inference.DEFAULT_TILE_OVERLAP,
                    help="overlap of neighbouring tiles in pixels (default %(default)s)")
  fuse.add_argument("--grey", action="store_true", help="write the fused luma only, even for colour sources")
  return parser


def _error(message: str) -> int:
  print(f"fusionjax fuse: error: {message}", file=sys.stderr)
  return USAGE_ERROR


def _fuse(args: argparse.Namespace) -> int:
  if len(args.sources) < 2:
    return _error(f"fusion needs at least two source images, got {len(args.sources)}.")
  if args.ckpt is None and args.task is None:
    return _error("say which fusion this is with --task mfif|meif|ivf|mif to use the shipped weights "
                  "(e.g. `fusionjax fuse vis.png ir.png -o fused.png --task ivf`), or pass --ckpt DIR, the "
                  "workdir of a stage you trained.")
  try:
    # Everything that can fail on user input runs before anything is written.
    out = inference.check_output_path(args.out)
    inference.check_tiling(args.tile_size, args.overlap)
    images = inference.load_sources(args.sources)
    fusion_model = inference.load_model(args.ckpt, task=args.task)
  except (FileNotFoundError, ValueError) as error:
    return _error(str(error))
  fused = inference.fuse_images(fusion_model, images, tile_size=args.tile_size, tile_overlap=args.overlap,
                                grey=args.grey)
  try:
    imageio.save_image(out, fused)
  except OSError as error:
    return _error(f"cannot write {out}: {error}. Check that its folder is writable.")
  print(f"Wrote {out} ({fusion_model.task} checkpoint {fusion_model.path}, step {fusion_model.step}).",
        file=sys.stderr)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the ``fusionjax`` command.

  Args:
    argv: arguments without the program name (default ``sys.argv[1:]``).

  Returns:
    The exit code: 0 on success, 2 on user errors.
  """
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as exit_:
    return int(exit_.code or 0)
  runtime.configure()
  if args.command == "fuse":
    return _fuse(args)
  return _error(f"unknown command {args.command!r}.")


if __name__ == "__main__":
  sys.exit(main())
