"""The ``fusionjax`` command line: ``fusionjax fuse A B [C ...] -o OUT (--task TASK | --ckpt DIR)``.

Fuses two or more registered images of one size (colour or grey, any format Pillow reads) with a
trained stage (by default the weights shipped with the package for ``--task``) and writes the
result (colour when any source is colour, see :mod:`fusionjax.inference`). User errors (missing or
unreadable files, mismatched sizes, a missing checkpoint, a checkpoint of another task) end with
exit code 2 and one message on stderr that says what to do; nothing is written then, and an
existing output file (or a source named as the output) is left untouched.

What reading the sources decided is said in one ``note:`` line each on stderr:

- a 16-bit source holding fewer bits (a 12-bit thermal image) is read at the depth it holds, unless
  ``--bit-depth`` says otherwise (:func:`fusionjax.imageio.read_image`);
- transparent pixels: the fused image is transparent where any source is (its alpha is the smallest
  of the sources' alphas), so content hidden under transparency never shows in the output. Formats
  without alpha (JPEG, BMP, GIF, PPM/PGM) get the fused image composited on a black background.

``train.py`` and ``evaluate.py`` are absl programs; :func:`run_absl` gives them the same conventions
(``--help`` exits 0, a bad flag exits 2 with one line).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

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
                    help="fuse images larger than this in overlapping tiles of at most "
                         f"{inference.DEFAULT_SPLIT_SIZE} px (default %(default)s)")
  fuse.add_argument("--overlap", type=int, default=inference.DEFAULT_TILE_OVERLAP,
                    help="overlap of neighbouring tiles in pixels (default %(default)s)")
  fuse.add_argument("--grey", action="store_true", help="write the fused luma only, even for colour sources")
  fuse.add_argument("--bit-depth", type=int, choices=imageio.BIT_DEPTHS, default=None,
                    help="bits of data in 16-bit grey sources (e.g. 12 for many thermal cameras); default: "
                         "taken from the largest value, and said in a note")
  return parser


def _error(message: str) -> int:
  print(f"fusionjax fuse: error: {message}", file=sys.stderr)
  return USAGE_ERROR


def _note(message: str) -> None:
  print(f"fusionjax fuse: note: {message}", file=sys.stderr)


def _output_alpha(decoded: Sequence[imageio.DecodedImage], names: Sequence[str], out) -> tuple[np.ndarray | None, list[str]]:
  """The output's alpha (the smallest source alpha; None when every source is opaque) and its notes."""
  alphas = [(name, d.alpha) for name, d in zip(names, decoded) if d.alpha is not None]
  if not alphas:
    return None, []
  alpha = np.minimum.reduce([a for _, a in alphas])
  if out.suffix.lower() in imageio.ALPHA_SUFFIXES:
    action = f"{out.name} is transparent where any source is (alpha = the smallest source alpha)"
  else:
    action = (f"{out.suffix} has no alpha channel, so {out.name} is composited on black where any source is "
              f"transparent (write {out.stem}.png to keep the alpha)")
  return alpha, [f"{imageio.transparency_note(name, a)}; {action}." for name, a in alphas]


def _fuse(args: argparse.Namespace) -> int:
  if len(args.sources) < 2:
    return _error(f"fusion needs at least two source images, got {len(args.sources)}.")
  if args.ckpt is None and args.task is None:
    return _error("say which fusion this is with --task mfif|meif|ivf|mif to use the shipped weights "
                  "(e.g. `fusionjax fuse vis.png ir.png -o fused.png --task ivf`), or pass --ckpt DIR, the "
                  "workdir of a stage you trained.")
  try:
    # Everything that can fail on user input runs before anything is written.
    out = inference.check_output_path(args.out, sources=args.sources)
    inference.check_tiling(args.tile_size, args.overlap)
    decoded = [imageio.read_image(path, bit_depth=args.bit_depth) for path in args.sources]
    images = [d.pixels for d in decoded]
    inference.check_sources(images, [str(p) for p in args.sources])
    alpha, alpha_notes = _output_alpha(decoded, args.sources, out)
    fusion_model = inference.load_model(args.ckpt, task=args.task)
  except (FileNotFoundError, ValueError) as error:
    return _error(str(error))
  for note in [n for d in decoded for n in d.notes] + alpha_notes:
    _note(note)
  fused = inference.fuse_images(fusion_model, images, tile_size=args.tile_size, tile_overlap=args.overlap,
                                grey=args.grey,
                                progress=inference.terminal_progress("tiles"))
  if not np.isfinite(fused).all():
    return _error(f"the fused image holds NaN or infinite values: the {fusion_model.task} checkpoint "
                  f"{fusion_model.path} (step {fusion_model.step}) is damaged or its training diverged; "
                  "use another checkpoint. Nothing was written.")
  if alpha is not None and out.suffix.lower() not in imageio.ALPHA_SUFFIXES:
    fused, alpha = fused * alpha[..., None], None  # "Over" a black background.
  try:
    imageio.save_image(out, fused, alpha=alpha)
  except OSError as error:
    return _error(f"cannot write {out}: {error}. Check that its folder is writable and has free space.")
  print(f"Wrote {out} ({fusion_model.task} checkpoint {fusion_model.path}, step {fusion_model.step}).",
        file=sys.stderr)
  return 0


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
      print(f"{Path(args[0]).name}: error: {_one_line(error)}. Pass --helpfull to list the flags.", file=sys.stderr)
      sys.exit(USAGE_ERROR)
    except (AttributeError, KeyError) as error:  # ml_collections: --config.<field> names no field.
      listing = " (--print_config lists them)" if "print_config" in flags.FLAGS else ""
      print(f"{Path(args[0]).name}: error: no config field {str(error).strip(chr(34))} to set; check the "
            f"--config.<field> flags{listing}.", file=sys.stderr)
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
