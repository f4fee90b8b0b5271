r"""Packs the training images of a data root into a small folder of the same layout.

  python results/pack_training_data.py DATA [--out runs/gpu_data] [--max_side 640] [--quality 90] [--max_mib 48]

A machine that trains but has no copy of the benchmarks (an accelerator lent for a few minutes, a
cloud VM) needs only what ``train.py`` reads: ``clean_natural/`` and ``more_natural/`` (synthetic
multi-focus and multi-exposure pairs), ``sice16/train/`` (exposure pairs with references) and the
RoadScene training pairs (``roadscene/`` without its 50 test pairs). This copies exactly those: a
JPEG whose longer side is at most ``--max_side`` is copied byte for byte; any other image is
resized to that side (Lanczos) and written as a JPEG of the given quality with full-resolution
chroma (4:4:4), so the pack fits a transfer limit. Training reads 64–128 px crops, so the smaller
photographs keep the sharp detail that the synthetic defocus needs. The test sets are left out on
purpose: the stages must never see them in training.

Prints the pack's size and exits 2 (after removing the pack) when it exceeds ``--max_mib``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax.data import readers  # noqa: E402
from fusionjax.imageio import is_image_file  # noqa: E402

#: Photograph folders copied whole (recursively), relative to the data root.
IMAGE_SETS = ("clean_natural", "more_natural")


def _save(source: Path, dest: Path, quality: int, max_side: int) -> int:
  """Copies or re-encodes ``source`` at ``dest`` (suffix .jpg); returns the bytes written."""
  dest = dest.with_suffix(".jpg")
  dest.parent.mkdir(parents=True, exist_ok=True)
  with Image.open(source) as image:
    if image.format == "JPEG" and max(image.size) <= max_side:
      shutil.copyfile(source, dest)
      return dest.stat().st_size
    if max(image.size) > max_side:
      scale = max_side / max(image.size)
      size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
      image = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(image)
  if array.ndim == 3 and array.shape[-1] == 4:
    array = array[..., :3]
  if array.dtype != np.uint8:  # 16-bit photographs: keep the top 8 bits.
    array = (array.astype(np.float64) / np.iinfo(array.dtype).max * 255 + 0.5).astype(np.uint8)
  Image.fromarray(array).save(dest, quality=quality, subsampling=0)
  return dest.stat().st_size


def pack(data_dir: Path, out: Path, quality: int, max_side: int) -> tuple[int, int]:
  """Copies the training images of ``data_dir`` into ``out``; returns (files, bytes)."""
  files = size = 0
  for name in IMAGE_SETS:
    folder = data_dir / name
    if not folder.is_dir():
      print(f"note: {folder} is missing; skipped", file=sys.stderr)
      continue
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)):
      size += _save(path, out / path.relative_to(data_dir), quality, max_side)
      files += 1
  pair_sets = (("sice", "train", "sice16"), ("roadscene", "train", "roadscene"))
  for dataset, split, folder in pair_sets:
    source_root = readers.dataset_dir(dataset, data_dir)
    for pair in readers.list_pairs(dataset, data_dir, split):
      for path in list(pair.sources) + ([pair.reference] if pair.reference else []):
        size += _save(path, out / folder / Path(path).relative_to(source_root), quality, max_side)
        files += 1
  # RoadScene's reader needs its test list to know which pairs are the test ones: an empty list
  # keeps the layout valid, and every packed pair is a training pair.
  roadscene_list = readers.dataset_dir("roadscene", data_dir) / "test50.txt"
  if roadscene_list.is_file():
    (out / "roadscene" / "test50.txt").write_text("")
  return files, size


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "data_dir", type=Path, help="a data root (clean_natural/, sice16/, roadscene/, ...)"
  )
  parser.add_argument(
    "--out", type=Path, default=Path("runs/gpu_data"), help="the pack's folder (replaced)"
  )
  parser.add_argument("--max_side", type=int, default=640, help="longer side of the packed images")
  parser.add_argument(
    "--quality", type=int, default=90, help="JPEG quality of re-encoded images, 1-100"
  )
  parser.add_argument("--max_mib", type=float, default=48.0, help="fail when the pack is larger")
  args = parser.parse_args(argv)
  if not args.data_dir.is_dir():
    print(
      f"error: {args.data_dir} is not a folder; pass the data root that holds clean_natural/.",
      file=sys.stderr,
    )
    return 2
  if not 1 <= args.quality <= 100:
    print(f"error: --quality must be 1-100, got {args.quality}.", file=sys.stderr)
    return 2
  if args.max_side < 128:
    print(
      f"error: --max_side must be at least 128 (the crop size of the full configs), got {args.max_side}.",
      file=sys.stderr,
    )
    return 2
  if args.out.exists():
    shutil.rmtree(args.out)
  try:
    files, size = pack(args.data_dir, args.out, args.quality, args.max_side)
  except (ValueError, FileNotFoundError) as error:
    shutil.rmtree(args.out, ignore_errors=True)
    print(f"error: {error}", file=sys.stderr)
    return 2
  mib = size / 2**20
  print(f"Packed {files} images into {args.out} ({mib:.1f} MiB, JPEG quality {args.quality}).")
  if mib > args.max_mib:
    shutil.rmtree(args.out)
    print(
      f"error: the pack is {mib:.1f} MiB, over --max_mib {args.max_mib}; lower --max_side or --quality.",
      file=sys.stderr,
    )
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
