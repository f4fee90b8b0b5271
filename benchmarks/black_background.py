r"""How black the background of fused medical pairs stays.

  python benchmarks/black_background.py [--data_dir DATA] [--ckpt shipped] [--max_pairs N]

Harvard MRI-CT and MRI-SPECT pairs have a black surround; a fusion rule should keep it black. For
every pair this takes the pixels where both sources are at most 2 grey levels (8-bit luma) and prints
the fused image's mean, 99th percentile and maximum there. Without ``--data_dir`` it scores the
shipped Harvard samples (``fusionjax/data/samples``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax import color, imageio, inference, stages  # noqa: E402
from fusionjax.data import readers, sample_pairs  # noqa: E402

#: Source levels (8-bit) that count as background.
BACKGROUND = 2


#: Background pixels at least this far (pixels, chessboard distance) from any other pixel form the
#: "inner" background: the network sees some context, so the pixels next to tissue may take some of it.
MARGIN = 4


def background_levels(sources, fused, margin: int = 0) -> np.ndarray | None:
  """The fused 8-bit luma where every source is at most :data:`BACKGROUND` (and, with ``margin``,
  so is every pixel within ``margin`` pixels), or None if there is none."""
  from scipy import ndimage

  lumas = [color.split_luma_chroma(image)[0][..., 0] * 255 for image in sources]
  background = np.all([luma <= BACKGROUND + 0.5 for luma in lumas], axis=0)
  if margin:
    structure = np.ones((2 * margin + 1, 2 * margin + 1), bool)
    background = ndimage.binary_erosion(background, structure, border_value=1)
  if not background.any():
    return None
  return color.split_luma_chroma(fused)[0][..., 0][background] * 255


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  parser.add_argument(
    "--data_dir", default=None, help="data root with harvard/ (default: the shipped samples)"
  )
  parser.add_argument(
    "--ckpt", default="shipped", help="stage workdir, or 'shipped' (the MEIF stage)"
  )
  parser.add_argument("--max_pairs", type=int, default=None, help="at most this many pairs per set")
  args = parser.parse_args(argv)
  data_dir = args.data_dir or sample_pairs.samples_dir()
  model = stages.load_model(None if args.ckpt == "shipped" else args.ckpt, task="mif")
  print(
    "| set | pair | background px | fused mean | fused p99 | fused max | "
    f"max ≥ {MARGIN} px from tissue |\n|---|---|---:|---:|---:|---:|---:|"
  )
  for dataset in ("harvard_mri_ct", "harvard_mri_spect"):
    try:
      pairs = readers.list_pairs(dataset, data_dir)
    except (FileNotFoundError, ValueError) as error:
      print(f"error: {error}", file=sys.stderr)
      return 2
    for pair in pairs[: args.max_pairs]:
      sources = [imageio.load_image(path) for path in pair.sources]
      fused = inference.fuse_images(model, sources)
      levels = background_levels(sources, fused)
      if levels is None:
        print(f"| {dataset} | {pair.name} | 0 | – | – | – | – |")
        continue
      inner = background_levels(sources, fused, MARGIN)
      print(
        f"| {dataset} | {pair.name} | {levels.size} | {levels.mean():.1f} | {np.percentile(levels, 99):.1f} "
        f"| {levels.max():.1f} | {'–' if inner is None else f'{inner.max():.1f}'} |",
        flush=True,
      )
  return 0


if __name__ == "__main__":
  sys.exit(main())
