"""The implementations of the ``fusionjax`` commands ``fuse``, ``metrics`` and ``export``.

:mod:`fusionjax.cli` parses the command line and calls :func:`run_fuse`, :func:`run_metrics` or
:func:`run_export` with the parsed arguments; each returns the exit code and says what went wrong on
stderr (:func:`fusionjax.cli._error`). The conventions (exit codes, notes, transparency) are those
described in :mod:`fusionjax.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionjax import batch
from fusionjax import cli
from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages
from fusionjax import tasks
from fusionjax import tiling

_TASK_CHOICES = "|".join(tasks.TASKS)


def _output_alpha(
  decoded: Sequence[imageio.DecodedImage], names: Sequence[str], out
) -> tuple[np.ndarray | None, list[str]]:
  """The output's alpha (the smallest source alpha; None when every source is opaque) and its notes."""
  alphas = [(name, d.alpha) for name, d in zip(names, decoded) if d.alpha is not None]
  if not alphas:
    return None, []
  alpha = np.minimum.reduce([a for _, a in alphas])
  if out.suffix.lower() in imageio.ALPHA_SUFFIXES:
    action = f"{out.name} is transparent where any source is (alpha = the smallest source alpha)"
  else:
    action = (
      f"{out.suffix} has no alpha channel, so {out.name} is composited on black where any source is "
      f"transparent (write {out.stem}.png to keep the alpha)"
    )
  return alpha, [f"{imageio.transparency_note(name, a)}; {action}." for name, a in alphas]


def _load_fusion(args: argparse.Namespace):
  """The model (or exported program) that ``fuse`` and ``export`` use; raises on bad input."""
  if args.task == cli.AUTO:
    if args.ckpt is not None or args.exported is not None:
      raise ValueError(
        "--task auto picks one of the shipped stages; drop --ckpt/--exported, or name the task."
      )
    return _AutoFusion()
  if args.exported is not None:
    if args.ckpt is not None or args.task is not None:
      raise ValueError(
        f"--exported {args.exported} carries its own weights and task; drop --ckpt and --task."
      )
    from fusionjax import export

    return export.load_exported(args.exported)
  return stages.load_model(args.ckpt, task=args.task)


class _AutoFusion:
  """``--task auto``: the shipped stage of the task :func:`fusionjax.detect.detect_task` picks, per fusion."""

  path = "shipped weights"

  def __init__(self):
    self.models: dict = {}
    self.picked: dict[str, int] = {}
    self.last = None

  def model_for(self, images):
    from fusionjax import detect

    self.last = detect.detect_task(images)
    self.picked[self.last.task] = self.picked.get(self.last.task, 0) + 1
    if self.last.task not in self.models:
      self.models[self.last.task] = stages.load_model(None, task=self.last.task)
    return self.models[self.last.task]


def _fuse_function(fusion, args: argparse.Namespace, pad_multiple: int | None, progress=None):
  """``images -> (fused, compiled)`` for a loaded model or exported program (``progress``: tiles done)."""
  if isinstance(fusion, _AutoFusion):
    return lambda images: _fuse_function(fusion.model_for(images), args, pad_multiple, progress)(
      images
    )
  if hasattr(fusion, "exported"):
    return lambda images: fusion.fuse_images(
      images,
      tile_size=args.tile_size,
      tile_overlap=args.overlap,
      grey=args.grey,
      pad_multiple=pad_multiple,
      sequence=args.sequence,
    )

  def fuse(images):
    fused, info = inference.fuse_images(
      fusion,
      images,
      tile_size=args.tile_size,
      tile_overlap=args.overlap,
      grey=args.grey,
      pad_multiple=pad_multiple,
      progress=progress,
      with_info=True,
      sequence=args.sequence,
    )
    return fused, info.compiled

  return fuse


def _describe(fusion) -> str:
  if isinstance(fusion, _AutoFusion):
    return "shipped stage that --task auto picks for each pair"
  if hasattr(fusion, "exported"):
    return f"exported {fusion.task} program {fusion.path}"
  return f"{fusion.task} checkpoint {fusion.path}, step {fusion.step}"


def _check_pad_multiple(value: int | None) -> None:
  if value is not None and value < 1:
    raise ValueError(
      f"--pad_multiple must be a positive integer (1 for exact-size fusion), got {value}."
    )


def run_fuse(args: argparse.Namespace) -> int:
  if args.dirs is not None or args.dataset is not None:
    return _fuse_folders(args)
  if len(args.sources) < 2:
    return cli._error(
      f"fusion needs at least two source images, got {len(args.sources)} (to fuse folders, pass "
      "--dirs A_DIR B_DIR)."
    )
  if args.ckpt is None and args.task is None and args.exported is None:
    return cli._error(
      f"say which fusion this is with --task {_TASK_CHOICES} to use the shipped weights "
      "(e.g. `fusionjax fuse vis.png ir.png -o fused.png --task ivf`), or pass --ckpt DIR, the "
      "workdir of a stage you trained."
    )
  try:
    # Everything that can fail on user input runs before anything is written.
    out = batch.check_output_path(args.out, sources=args.sources)
    tiling.check_tiling(args.tile_size, args.overlap)
    _check_pad_multiple(args.pad_multiple)
    decoded = [imageio.read_image(path, bit_depth=args.bit_depth) for path in args.sources]
    images = [d.pixels for d in decoded]
    inference.check_sources(images, [str(p) for p in args.sources])
    alpha, alpha_notes = _output_alpha(decoded, args.sources, out)
    fusion = _load_fusion(args)
  except (FileNotFoundError, ValueError) as error:
    return cli._error(str(error))
  for note in [n for d in decoded for n in d.notes] + alpha_notes:
    cli._note(note)
  if isinstance(fusion, _AutoFusion):
    try:
      model = fusion.model_for(images)
    except (FileNotFoundError, ValueError) as error:
      return cli._error(str(error))
    cli._note(f"--task auto picked {fusion.last.task}: {fusion.last.reason}.")
    fusion = model
  fused, _ = _fuse_function(
    fusion, args, args.pad_multiple, progress=inference.terminal_progress("tiles")
  )(images)
  if not np.isfinite(fused).all():
    return cli._error(
      f"the fused image holds NaN or infinite values: the {_describe(fusion)} is damaged or its "
      "training diverged; use another checkpoint. Nothing was written."
    )
  if alpha is not None and out.suffix.lower() not in imageio.ALPHA_SUFFIXES:
    fused, alpha = fused * alpha[..., None], None  # "Over" a black background.
  try:
    imageio.save_image(out, fused, alpha=alpha)
  except OSError as error:
    return cli._error(
      f"cannot write {out}: {error}. Check that its folder is writable and has free space."
    )
  print(f"Wrote {out} ({_describe(fusion)}).", file=sys.stderr)
  return 0


def _fuse_folders(args: argparse.Namespace) -> int:
  """``fuse --dirs`` / ``fuse --dataset``: every pair into OUT_DIR/<name>.png (exit 1 if some failed)."""
  if args.sources:
    return cli._error(
      f"pass either source images or --dirs/--dataset, not both (got {' '.join(args.sources)})."
    )
  if args.dirs is not None and args.dataset is not None:
    return cli._error(
      "pass either --dirs (folders paired by file name) or --dataset (a benchmark reader), not both."
    )
  task = args.task
  try:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
      raise ValueError(f"-o {out} is a file; with --dirs/--dataset, -o names the output folder.")
    if not out.exists() and imageio.is_image_file(out):
      raise ValueError(
        f"-o {out} looks like an image file; with --dirs/--dataset, -o names the output folder "
        f"(e.g. -o {out.with_suffix('')})."
      )
    tiling.check_tiling(args.tile_size, args.overlap)
    _check_pad_multiple(args.pad_multiple)
    if args.dirs is not None:
      jobs = batch.folder_jobs(args.dirs)
      for folder in args.dirs:
        if out.exists() and Path(folder).resolve() == out.resolve():
          raise ValueError(
            f"-o {out} is the source folder {folder}; write the results to another folder."
          )
    else:
      from fusionjax import data

      reader = data.DATASETS.get(args.dataset)
      if reader is None or reader.is_image_set:
        known = sorted(n for n, r in data.DATASETS.items() if not r.is_image_set)
        raise ValueError(
          f"unknown --dataset {args.dataset!r}; use one of {', '.join(known)} (or --dirs)."
        )
      jobs = batch.dataset_jobs(args.dataset, args.data_dir, args.split)
      task = task or (reader.task if args.ckpt is None and args.exported is None else None)
    if task is None and args.ckpt is None and args.exported is None:
      raise ValueError(
        f"say which fusion this is with --task {_TASK_CHOICES} to use the shipped weights "
        "(e.g. `fusionjax fuse --dirs vis ir -o fused --task ivf`), or pass --ckpt DIR."
      )
    args.task = task
    fusion = _load_fusion(args)
  except (FileNotFoundError, ValueError) as error:
    return cli._error(str(error))
  pad_multiple = batch.DEFAULT_PAD_MULTIPLE if args.pad_multiple is None else args.pad_multiple
  print(
    f"Fusing {len(jobs)} pairs with the {_describe(fusion)}, inputs padded to a multiple of "
    f"{pad_multiple}.",
    file=sys.stderr,
  )
  report = batch.fuse_jobs(
    jobs,
    out,
    _fuse_function(fusion, args, pad_multiple),
    overwrite=args.overwrite,
    bit_depth=args.bit_depth,
    progress=not args.no_progress,
  )
  for line in report.lines():
    print(line, file=sys.stderr)
  if isinstance(fusion, _AutoFusion) and fusion.picked:
    print(
      "--task auto picked "
      + ", ".join(
        f"{task} for {n} pair{'s' if n != 1 else ''}" for task, n in sorted(fusion.picked.items())
      )
      + (f" ({fusion.last.reason})" if len(fusion.picked) == 1 else "")
      + ".",
      file=sys.stderr,
    )
  return 1 if report.failed else 0


def run_metrics(args: argparse.Namespace) -> int:
  """``fusionjax metrics FUSED A B``: every metric of one fused image, with the undefined ones' reasons."""
  from fusionjax import evaluation

  if len(args.sources) < 2:
    return cli._error(
      f"give the fused image and at least two sources, got {len(args.sources)} source(s).",
      "metrics",
    )
  try:
    fused = imageio.load_image(args.fused)
    sources = [imageio.load_image(p) for p in args.sources]
    inference.check_sources(sources, list(args.sources))
    reference = imageio.load_image(args.reference) if args.reference else None
    if reference is not None and reference.shape[:2] != fused.shape[:2]:
      raise ValueError(
        f"The reference {args.reference} is {reference.shape[0]}x{reference.shape[1]} (HxW) but the "
        f"fused image is {fused.shape[0]}x{fused.shape[1]}; they must have one size."
      )
    scores = evaluation.score_image(fused, sources, reference, convention=args.convention)
  except (FileNotFoundError, ValueError) as error:
    return cli._error(str(error), "metrics")
  names = [n for n in evaluation.METRIC_ORDER if n in scores] + [
    n for n in scores if n not in evaluation.METRIC_ORDER
  ]
  if args.json:
    print(
      json.dumps(
        {
          "fused": str(args.fused),
          "sources": [str(p) for p in args.sources],
          "reference": args.reference,
          "convention": args.convention,
          "metrics": {n: scores[n].value for n in names},
          "undefined": {n: scores[n].reason for n in names if scores[n].value is None},
        },
        indent=2,
      )
    )
    return 0
  height, width = fused.shape[:2]
  print(
    f"{args.fused} ({height}x{width}) against {', '.join(map(str, args.sources))}"
    + (f", reference {args.reference}" if args.reference else "")
    + f"; `{args.convention}` convention, 8-bit BT.601 luma:"
  )
  for name in names:
    result = scores[name]
    shown = f"{result.value:.4f}" if result.value is not None else f"undefined: {result.reason}"
    print(f"  {name:<9} {shown}")
  return 0


def run_export(args: argparse.Namespace) -> int:
  """``fusionjax export``: the stage's luma fusion as a jax.export file."""
  from fusionjax import export

  if args.ckpt is None and args.task is None:
    return cli._error(
      f"say which stage to export with --task {_TASK_CHOICES} (the shipped weights) or --ckpt DIR.",
      "export",
    )
  out = Path(args.out)
  if out.is_dir():
    return cli._error(
      f"-o {out} is a folder; give a file name such as {out / ('model' + export.SUFFIX)}.", "export"
    )
  try:
    fusion_model = stages.load_model(args.ckpt, task=args.task)
    exported = export.export_fusion(fusion_model)
  except (FileNotFoundError, ValueError) as error:
    return cli._error(str(error), "export")
  try:
    export.save_exported(exported, out)
  except OSError as error:
    return cli._error(
      f"cannot write {out}: {error}. Check that its folder is writable and has free space.",
      "export",
    )
  multiple = export.load_exported(out).multiple
  print(
    f"Wrote {out} ({out.stat().st_size / 1024:.0f} KiB): the {fusion_model.task} luma fusion of "
    f"{fusion_model.path} (step {fusion_model.step}) for (1, H, W, 1) float32 inputs, H, W >= {multiple}"
    + ("; its ColorNet is not included" if fusion_model.colornet is not None else "")
    + ".",
    file=sys.stderr,
  )
  return 0
