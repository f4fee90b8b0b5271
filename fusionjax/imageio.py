"""Reading and writing images, with errors that say what to do.

Images are float32 arrays in [0, 1], shape (H, W, C) with C = 1 (grey) or 3 (RGB). Many benchmark
sets store grey images as three identical channels (TNO, Harvard MRI/CT); :func:`load_image` folds
those to one channel so that a grey source is recognised as grey and contributes no chroma.

Two things in a file change how it is read, and :func:`read_image` reports each in a one-line note
(:func:`load_image` logs them as warnings):

- Bit depth. A 16-bit file often holds fewer bits: thermal and medical sensors store 10, 12 or 14 bits
  in 16-bit PNGs or TIFFs. Read at full 16-bit range such an image is almost black, so by default the
  depth is taken from the largest value (the smallest of :data:`BIT_DEPTHS` whose range holds it:
  largest value 3012 -> 12-bit, levels divided by 4095); ``bit_depth=16`` (``--bit_depth 16``) reads
  the full range, any other depth is checked against the data.
- Transparency. Alpha is returned separately (``alpha``), never mixed into the colours: the colours
  under transparent pixels are kept as stored. ``fusionjax fuse`` makes the output transparent where
  any source is (see :mod:`fusionjax.cli`); :func:`load_image` ignores alpha and says so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: File suffixes that the dataset readers treat as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")
#: Suffixes :func:`save_image` can write with an alpha channel.
ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp")
#: Bit depths a 16-bit integer image may hold (sensors commonly store 10, 12 or 14 bits in 16).
BIT_DEPTHS = (8, 10, 12, 14, 16)
# Pillow modes of integer grey images wider than 8 bits (16-bit PNGs open as "I;16" or "I").
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def is_image_file(path: str | os.PathLike) -> bool:
  """True when ``path`` has one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
  return Path(path).suffix.lower() in IMAGE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class DecodedImage:
  """An image as :func:`read_image` returns it.

  Attributes:
    pixels: float32 (H, W, 1) for grey or (H, W, 3) for colour, in [0, 1]; alpha is not applied.
    alpha: float32 (H, W) in [0, 1] when the file has transparent pixels, else ``None``.
    bit_depth: the bit depth the levels were scaled by (8 for 8-bit files).
    notes: one line for each choice made in reading that changes what the levels mean (bit depth taken
      from the data, reduced precision); empty for a plain 8-bit image. Transparency is in ``alpha``
      (:func:`transparency_note` describes it).
  """

  pixels: np.ndarray
  alpha: np.ndarray | None = None
  bit_depth: int = 8
  notes: tuple[str, ...] = ()


def _check_image_path(path: Path) -> None:
  if path.is_dir():
    try:
      examples = sorted(p.name for p in path.iterdir() if p.is_file() and is_image_file(p))[:1]
    except OSError:  # An unreadable folder: the message still says what the path is.
      examples = []
    hint = f" (e.g. {path / examples[0]})" if examples else ""
    raise FileNotFoundError(
      f"{path} is a folder, not an image file; pass an image file inside it{hint}."
    )
  if not path.is_file():
    raise FileNotFoundError(
      f"Image file not found: {path}. Check the path (and the data directory flag)."
    )


def _used_bits(largest: int) -> int:
  """The smallest of :data:`BIT_DEPTHS` whose levels 0 .. 2**bits - 1 hold ``largest``."""
  return next((bits for bits in BIT_DEPTHS if largest < 2**bits), BIT_DEPTHS[-1])


def _wide_grey(
  levels: np.ndarray, path: Path, bit_depth: int | None
) -> tuple[np.ndarray, int, list[str]]:
  """Scales 16-bit grey levels by the bit depth they hold (detected, or ``bit_depth``)."""
  levels = np.maximum(levels, 0)
  largest = int(levels.max()) if levels.size else 0
  if largest > 65535:
    raise ValueError(
      f"{path} holds values up to {largest}, beyond 16 bits; convert it to a 16-bit or 8-bit image."
    )
  if bit_depth is None:
    bits = _used_bits(largest)
    notes = (
      []
      if bits == 16
      else [
        f"{path}: 16-bit image whose values fit in {bits} bits (largest {largest}): read as {bits}-bit data "
        f"(levels 0-{2**bits - 1}); --bit_depth 16 reads it as full-range 16-bit."
      ]
    )
  else:
    bits = int(bit_depth)
    if bits not in BIT_DEPTHS:
      raise ValueError(
        f"Unknown bit depth {bit_depth}; use one of {', '.join(map(str, BIT_DEPTHS))}."
      )
    if largest >= 2**bits:
      raise ValueError(
        f"{path} holds values up to {largest}, more than {bits}-bit data can (at most "
        f"{2**bits - 1}); pass a larger --bit_depth (at least {_used_bits(largest)})."
      )
    notes = (
      [] if bits == 16 else [f"{path}: read as {bits}-bit data (levels 0-{2**bits - 1}), as asked."]
    )
  return levels.astype(np.float32) / float(2**bits - 1), bits, notes


def _is_wide_colour_png(image: Image.Image) -> bool:
  """A 16-bit-per-channel colour PNG, which Pillow decodes to 8 bits per channel (the high bytes)."""
  tile = getattr(image, "tile", None) or []
  return (
    image.format == "PNG"
    and image.mode in ("RGB", "RGBA")
    and bool(tile)
    and ";16" in str(tile[0].args)
  )


def _transparency(image: Image.Image) -> np.ndarray | None:
  """The alpha channel in [0, 1] when some pixel is not fully opaque, else None."""
  if not image.has_transparency_data:
    return None
  try:
    alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
  except (
    ValueError,
    OSError,
  ):  # A mode Pillow cannot convert to RGBA: its alpha is unusable anyway.
    return None
  return alpha if alpha.size and alpha.min() < 1.0 else None


def transparency_note(path: str | os.PathLike, alpha: np.ndarray) -> str:
  """``'<path> has transparent pixels (12.5% not fully opaque)'``: the start of a notice about ``alpha``."""
  return f"{path} has transparent pixels ({100.0 * float(np.mean(np.asarray(alpha) < 1.0)):.1f}% not fully opaque)"


def read_image(
  path: str | os.PathLike, *, fold_grey: bool = True, bit_depth: int | None = None
) -> DecodedImage:
  """Reads an image file: its pixels in [0, 1], its alpha, and notes on how it was read.

  Palette and CMYK images are converted to RGB and EXIF orientation is applied (photographs from
  cameras carry it). 16-bit grey is scaled by the bit depth it holds (module docstring).

  Args:
    path: any file Pillow reads.
    fold_grey: return (H, W, 1) when the three colour channels are identical.
    bit_depth: for 16-bit grey files, the depth of the data (one of :data:`BIT_DEPTHS`); ``None``
      detects it from the largest value. Ignored for 8-bit files.

  Returns:
    A :class:`DecodedImage`.

  Raises:
    FileNotFoundError: the file does not exist, or is a folder.
    ValueError: the file is not a readable image, or its values do not fit ``bit_depth``.
  """
  path = Path(path)
  _check_image_path(path)
  notes: list[str] = []
  try:
    with Image.open(path) as image:
      wide_colour = _is_wide_colour_png(image)
      image = ImageOps.exif_transpose(image)
      image.load()
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise ValueError(
      f"Cannot read image {path}: {error}. Is it an image file in a format Pillow reads?"
    ) from error
  alpha = _transparency(image)
  bits = 8
  if image.mode in _WIDE_GREY_MODES:
    array, bits, wide_notes = _wide_grey(np.asarray(image, dtype=np.int64), path, bit_depth)
    array = array[..., None]
    notes += wide_notes
  elif image.mode == "F":
    array = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[..., None]
  elif image.mode in ("L", "1", "LA"):
    array = np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0
  else:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
  if array.size == 0:
    raise ValueError(f"Image {path} is empty ({array.shape}).")
  if wide_colour:
    # Pillow keeps the high byte of each 16-bit channel; with 12-bit data that leaves 4 bits.
    top = int(round(float(array.max()) * 255))
    if top < 16:
      raise ValueError(
        f"{path} is a 16-bit colour PNG whose values fit in 12 bits or fewer; Pillow reads colour "
        f"PNGs at 8 bits per channel, which would keep {top + 1} of its levels. Save it as 16-bit "
        "grey, or as 8-bit colour scaled to its range, and use that."
      )
    notes.append(
      f"{path}: 16-bit colour PNG read at 8 bits per channel (the low byte of each level is dropped)."
    )
  if fold_grey and array.shape[-1] == 3 and _channels_equal(array):
    array = array[..., :1]
  return DecodedImage(
    pixels=np.ascontiguousarray(array), alpha=alpha, bit_depth=bits, notes=tuple(notes)
  )


def load_image(
  path: str | os.PathLike, *, fold_grey: bool = True, bit_depth: int | None = None
) -> np.ndarray:
  """Reads an image file as float32 in [0, 1] (the pixels of :func:`read_image`).

  Alpha is ignored: the colours stored under transparent pixels are returned as they are, and a
  warning says so. The notes of :func:`read_image` (e.g. 12-bit data detected in a 16-bit file) are
  logged as warnings.

  Args:
    path: any file Pillow reads.
    fold_grey: return (H, W, 1) when the three colour channels are identical.
    bit_depth: see :func:`read_image`.

  Returns:
    Array (H, W, 1) for grey images, (H, W, 3) for colour ones.

  Raises:
    FileNotFoundError: the file does not exist, or is a folder.
    ValueError: the file is not a readable image.
  """
  decoded = read_image(path, fold_grey=fold_grey, bit_depth=bit_depth)
  for note in decoded.notes:
    logger.warning("%s", note)
  if decoded.alpha is not None:
    logger.warning(
      "%s; alpha ignored here: the colours stored under them are used.",
      transparency_note(path, decoded.alpha),
    )
  return decoded.pixels


def _channels_equal(rgb: np.ndarray) -> bool:
  return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Rounds a [0, 1] float image to uint8 levels (values outside [0, 1] are clipped)."""
  return np.round(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | os.PathLike, image: np.ndarray, alpha: np.ndarray | None = None) -> Path:
  """Writes a [0, 1] image atomically (a temporary file renamed into place).

  A failure part-way leaves no partial file and leaves any existing file at ``path`` untouched.

  Args:
    path: destination; the format follows the suffix (PNG is lossless; JPEG is written at quality 95).
    image: array (H, W), (H, W, 1) or (H, W, 3) in [0, 1].
    alpha: optional (H, W) opacity in [0, 1], written as the alpha channel; only for the suffixes in
      :data:`ALPHA_SUFFIXES`.

  Returns:
    The written path.
  """
  path = Path(path)
  array = np.asarray(image)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
    raise ValueError(f"save_image expects (H, W), (H, W, 1) or (H, W, 3), got {array.shape}.")
  suffix = path.suffix.lower()
  if suffix not in IMAGE_SUFFIXES:
    raise ValueError(f"Unknown image suffix for {path}; use one of {', '.join(IMAGE_SUFFIXES)}.")
  levels = to_uint8(array)
  if alpha is not None:
    if suffix not in ALPHA_SUFFIXES:
      raise ValueError(
        f"{path.name} cannot hold an alpha channel; use one of {', '.join(ALPHA_SUFFIXES)}."
      )
    alpha = np.asarray(alpha)
    if alpha.shape != array.shape[:2]:
      raise ValueError(f"alpha must be {array.shape[:2]} (H, W), got {alpha.shape}.")
    grey = levels.ndim == 2
    levels = np.concatenate(
      [levels[..., None] if grey else levels, to_uint8(alpha)[..., None]], axis=-1
    )
    pil = Image.fromarray(levels, mode="LA" if grey else "RGBA")
  else:
    pil = Image.fromarray(levels)
  options = {"quality": 95, "subsampling": 0} if suffix in (".jpg", ".jpeg") else {}
  return write_atomic(
    path, lambda tmp: pil.save(tmp, format=Image.registered_extensions()[suffix], **options)
  )


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
