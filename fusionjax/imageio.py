"""Reading and writing images, with errors that say what to do.

Images are float32 arrays in [0, 1], shape (H, W, C) with C = 1 (grey) or 3 (RGB). Many benchmark
sets store grey images as three identical channels (TNO, Harvard MRI/CT); :func:`load_image` folds
those to one channel so that a grey source is recognised as grey and contributes no chroma.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File suffixes that the dataset readers treat as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | os.PathLike) -> bool:
  """True when ``path`` has one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
  return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | os.PathLike, *, fold_grey: bool = True) -> np.ndarray:
  """Reads an image file as float32 in [0, 1].

  Alpha is dropped, palette and CMYK images are converted to RGB, 16-bit grey is scaled by 65535, and
  EXIF orientation is applied (photographs from cameras carry it).

  Args:
    path: any file Pillow reads.
    fold_grey: return (H, W, 1) when the three colour channels are identical.

  Returns:
    Array (H, W, 1) for grey images, (H, W, 3) for colour ones.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a readable image.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Image file not found: {path}. Check the path (and the data directory flag).")
  try:
    with Image.open(path) as image:
      image = ImageOps.exif_transpose(image)
      image.load()
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise ValueError(f"Cannot read image {path}: {error}. Is it an image file in a format Pillow reads?") from error
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    # 16-bit grey (Pillow opens 16-bit PNGs as "I" or "I;16").
    array = np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)[..., None]
  elif image.mode == "F":
    array = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[..., None]
  elif image.mode in ("L", "1", "LA"):
    array = np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0
  else:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
  if array.size == 0:
    raise ValueError(f"Image {path} is empty ({array.shape}).")
  if fold_grey and array.shape[-1] == 3 and _channels_equal(array):
    array = array[..., :1]
  return np.ascontiguousarray(array)


def _channels_equal(rgb: np.ndarray) -> bool:
  return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Rounds a [0, 1] float image to uint8 levels (values outside [0, 1] are clipped)."""
  return np.round(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
  """Writes a [0, 1] image atomically (a temporary file renamed into place).

  A failure part-way leaves no partial file and leaves any existing file at ``path`` untouched.

  Args:
    path: destination; the format follows the suffix (PNG is lossless; JPEG is written at quality 95).
    image: array (H, W), (H, W, 1) or (H, W, 3) in [0, 1].

  Returns:
    The written path.
  """
  path = Path(path)
  array = np.asarray(image)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
    raise ValueError(f"save_image expects (H, W), (H, W, 1) or (H, W, 3), got {array.shape}.")
  pil = Image.fromarray(to_uint8(array))
  suffix = path.suffix.lower()
  if suffix not in IMAGE_SUFFIXES:
    raise ValueError(f"Unknown image suffix for {path}; use one of {', '.join(IMAGE_SUFFIXES)}.")
  options = {"quality": 95, "subsampling": 0} if suffix in (".jpg", ".jpeg") else {}
  return write_atomic(path, lambda tmp: pil.save(tmp, format=Image.registered_extensions()[suffix], **options))


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
  """Writes a file through a temporary file in the same folder, renamed into place.

  A failure part-way leaves no partial file and leaves any existing file at ``path`` untouched.

  Args:
    path: destination (its folder is created if needed).
    write: called with the temporary file's path; writes the content there.

  Returns:
    The written path.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  os.close(fd)
  try:
    write(tmp)
    # mkstemp creates the file private (0600); give it the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path
