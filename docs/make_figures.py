r"""Draws the README figure: the shipped sample pairs, their sources and fused results side by side.

One row per sample pair (TNO, Lytro, MEFB, Harvard MRI-CT, Harvard MRI-SPECT), one column per
source and per method. Methods are the built-in baselines and, when given, the trained stages:
each pair is fused by the checkpoint of its task, medical pairs by the multi-exposure stage (the
paper's protocol).

  python docs/make_figures.py --ckpts mfif=runs/mfif,meif=runs/meif,ivf=runs/ivf \
      --out docs/figures/samples.jpg
  python docs/make_figures.py --shipped --out docs/figures/samples_shipped.jpg   # the shipped weights
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fusionjax import data
from fusionjax import evaluation
from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages
from fusionjax import tasks
from fusionjax import tiling

# Height of every cell in pixels, and of the caption strip above each column.
CELL = 200
CAPTION = 22


def _cell(image: np.ndarray | None, width: int) -> Image.Image:
  if image is None:
    return Image.new("RGB", (width, CELL), (255, 255, 255))
  u8 = imageio.to_uint8(image)
  pil = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).convert("RGB")
  return pil.resize((width, CELL), Image.Resampling.LANCZOS)


def sample_figure(
  methods: list[str], checkpoints: dict[str, str], tile_size: int, tile_overlap: int
) -> Image.Image:
  """Builds the grid image.

  Args:
    methods: baseline names (``evaluation.BASELINES`` keys), one column each.
    checkpoints: stage task -> stage workdir; adds the column "fusionjax" when non-empty.
    tile_size: tile size for large images.
    tile_overlap: tile overlap.

  Returns:
    The figure as a PIL image.
  """
  models = {task: stages.load_model(path, task=task) for task, path in checkpoints.items()}
  columns = (
    ["source 1", "source 2"] + list(methods) + (["fusionjax (trained stage)"] if models else [])
  )
  rows = []
  for pair in data.list_sample_pairs():
    sources = data.load_pair(pair).sources
    cells = list(sources[:2]) + [evaluation.BASELINES[m](sources) for m in methods]
    if models:
      model = models.get(stages.stage_for_task(pair.task))
      cells.append(
        None
        if model is None
        else inference.fuse_images(model, sources, tile_size=tile_size, tile_overlap=tile_overlap)
      )
    height, width = sources[0].shape[:2]
    rows.append((f"{pair.task}: {pair.name}", cells, max(1, round(CELL * width / height))))
  total_width = max(w for _, _, w in rows) * len(columns)
  figure = Image.new("RGB", (total_width, CAPTION + len(rows) * (CELL + CAPTION)), (255, 255, 255))
  draw = ImageDraw.Draw(figure)
  column_width = total_width // len(columns)
  for k, name in enumerate(columns):
    draw.text((k * column_width + 4, 4), name, fill=(0, 0, 0))
  for r, (label, cells, width) in enumerate(rows):
    top = CAPTION + r * (CELL + CAPTION)
    draw.text((4, top + 4), label, fill=(0, 0, 0))
    for k, image in enumerate(cells):
      figure.paste(_cell(image, min(width, column_width)), (k * column_width, top + CAPTION))
  return figure


def main(argv=None) -> int:
  """Parses the flags and writes the figure."""
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--methods", default="average,max", help="baselines to show (comma-separated; may be empty)"
  )
  parser.add_argument(
    "--ckpts",
    default="",
    help="task=workdir,... of trained stages (" + ", ".join(tasks.STAGES) + ")",
  )
  parser.add_argument(
    "--shipped", action="store_true", help="add the shipped weights' column (fusionjax.weights)"
  )
  parser.add_argument("--tile_size", type=int, default=tiling.DEFAULT_TILE_SIZE)
  parser.add_argument("--overlap", type=int, default=tiling.DEFAULT_TILE_OVERLAP)
  parser.add_argument(
    "--out", default=str(Path(__file__).resolve().parent / "figures" / "samples.jpg")
  )
  args = parser.parse_args(argv)
  methods = [m for m in args.methods.split(",") if m]
  unknown = [m for m in methods if m not in evaluation.BASELINES]
  if unknown:
    parser.error(
      f"unknown method(s) {', '.join(unknown)}; baselines: {', '.join(evaluation.BASELINES)}"
    )
  checkpoints = {}
  for item in filter(None, args.ckpts.split(",")):
    task, _, path = item.partition("=")
    if task not in tasks.STAGES or not path:
      parser.error(
        f"--ckpts entries are task=workdir with task {', '.join(tasks.STAGES)}; got {item!r}"
      )
    checkpoints[task] = path
  if args.shipped:
    from fusionjax import weights

    checkpoints = {task: str(weights.shipped_checkpoint(task)) for task in tasks.STAGES}
  try:
    figure = sample_figure(methods, checkpoints, args.tile_size, args.overlap)
  except (FileNotFoundError, ValueError) as error:
    print(f"make_figures.py: error: {error}", file=sys.stderr)
    return 2
  imageio.save_image(args.out, np.asarray(figure, np.float32) / 255.0)
  print(f"Wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
