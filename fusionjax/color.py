"""Colour handling: BT.601 full-range YCrCb and the chroma fusion rule.

The networks fuse the luma (Y) channel only. Colour is carried by the chroma channels, converted with
the BT.601 full-range matrix used by JPEG and OpenCV's ``COLOR_RGB2YCrCb`` (channel order Y, Cr, Cb,
all in [0, 1] with chroma centred on 0.5). Every function here accepts numpy or JAX arrays and
returns the same kind, so the data pipeline (numpy) and jitted code (JAX) share one definition.
"""

from __future__ import annotations

import numpy as np

# BT.601 full-range (JFIF) coefficients.
_KR, _KG, _KB = 0.299, 0.587, 0.114
_CR_SCALE = 0.5 / (1.0 - _KR)  # 0.713...: (R - Y) -> Cr - 0.5
_CB_SCALE = 0.5 / (1.0 - _KB)  # 0.564...: (B - Y) -> Cb - 0.5

#: Chroma value of a neutral (grey) pixel: 128/255 in uint8 terms is 0.5 here.
CHROMA_NEUTRAL = 0.5

#: Rows per block of the whole-image numpy conversions (:func:`split_luma_chroma`,
#: :func:`fuse_chroma_images`, :func:`merge_luma_chroma`): they compute in float64, block by
#: block, so their temporaries stay a few MiB whatever the image size. Every operation is per
#: pixel, so the result is the same as in one piece.
ROWS_PER_BLOCK = 256


def _by_rows(fn, arrays, channels: int) -> np.ndarray:
  """``fn`` applied to blocks of rows of (H, W, C) numpy arrays, into one float32 (H, W, channels)."""
  height, width = arrays[0].shape[:2]
  out = np.empty((height, width, channels), np.float32)
  for top in range(0, height, ROWS_PER_BLOCK):
    out[top : top + ROWS_PER_BLOCK] = fn(*(a[top : top + ROWS_PER_BLOCK] for a in arrays))
  return out


def _xp(x):
  """Returns the array namespace (numpy or jax.numpy) that ``x`` belongs to."""
  if isinstance(x, np.ndarray) or np.isscalar(x):
    return np
  import jax.numpy as jnp  # Deferred: numpy callers never import JAX.

  return jnp


def rgb_to_ycrcb(rgb):
  """Converts RGB in [0, 1] to BT.601 full-range YCrCb.

  Args:
    rgb: array (..., 3) with values in [0, 1].

  Returns:
    Array (..., 3) with channels (Y, Cr, Cb) in [0, 1]; chroma is 0.5 for grey pixels.
  """
  xp = _xp(rgb)
  if rgb.shape[-1] != 3:
    raise ValueError(f"rgb_to_ycrcb expects 3 channels in the last axis, got shape {rgb.shape}.")
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  y = _KR * r + _KG * g + _KB * b
  cr = (r - y) * _CR_SCALE + CHROMA_NEUTRAL
  cb = (b - y) * _CB_SCALE + CHROMA_NEUTRAL
  return xp.stack([y, cr, cb], axis=-1)


def ycrcb_to_rgb(ycrcb, clip: bool = True):
  """Inverse of :func:`rgb_to_ycrcb`.

  Args:
    ycrcb: array (..., 3) with channels (Y, Cr, Cb) in [0, 1].
    clip: clip the result to [0, 1] (fused chroma can leave the RGB gamut slightly).

  Returns:
    Array (..., 3) of RGB values.
  """
  xp = _xp(ycrcb)
  if ycrcb.shape[-1] != 3:
    raise ValueError(f"ycrcb_to_rgb expects 3 channels in the last axis, got shape {ycrcb.shape}.")
  y = ycrcb[..., 0]
  cr = ycrcb[..., 1] - CHROMA_NEUTRAL
  cb = ycrcb[..., 2] - CHROMA_NEUTRAL
  r = y + cr / _CR_SCALE
  b = y + cb / _CB_SCALE
  g = (y - _KR * r - _KB * b) / _KG
  rgb = xp.stack([r, g, b], axis=-1)
  return xp.clip(rgb, 0.0, 1.0) if clip else rgb


def fuse_chroma(crcb1, crcb2, tau: float = CHROMA_NEUTRAL):
  """Weighted-average chroma fusion rule for two colour sources.

  C = (C1·|C1−τ| + C2·|C2−τ|) / (|C1−τ| + |C2−τ|), and τ where the denominator is 0: the more
  saturated source dominates, so a washed-out exposure does not dilute the colour of a good one.

  Args:
    crcb1: array (..., 2) (or any shape) of chroma in [0, 1] of the first source.
    crcb2: array of the same shape for the second source.
    tau: the neutral chroma value (0.5 is 128/255).

  Returns:
    The fused chroma, same shape as the inputs.
  """
  if crcb1.shape != crcb2.shape:
    raise ValueError(f"fuse_chroma needs equal shapes, got {crcb1.shape} and {crcb2.shape}.")
  return fuse_chroma_many([crcb1, crcb2], tau)


def fuse_chroma_many(chromas, tau: float = CHROMA_NEUTRAL):
  """The rule of :func:`fuse_chroma` generalised to K colour sources (weights |C_k − τ|)."""
  if not chromas:
    raise ValueError("fuse_chroma_many needs at least one chroma array.")
  xp = _xp(chromas[0])
  stacked = xp.stack(list(chromas), axis=0)
  weights = xp.abs(stacked - tau)
  denom = weights.sum(axis=0)
  safe = xp.where(denom > 0, denom, 1.0)
  return xp.where(denom > 0, (stacked * weights).sum(axis=0) / safe, tau)


def fuse_chroma_images(chromas) -> np.ndarray:
  """:func:`fuse_chroma_many` of numpy (H, W, 2) chroma images, in float64 by blocks, as float32."""
  chromas = list(chromas)
  return _by_rows(
    lambda *blocks: fuse_chroma_many([b.astype(np.float64) for b in blocks]), chromas, 2
  )


def merge_luma_chroma(luma: np.ndarray, chroma: np.ndarray) -> np.ndarray:
  """The RGB image (H, W, 3) float32, clipped to [0, 1], of a luma (H, W, 1) and a chroma (H, W, 2).

  Converted in float64 by blocks of rows from the float32 values of both.
  """

  def convert(y, c):
    ycrcb = np.concatenate([y.astype(np.float32), c.astype(np.float32)], axis=-1)
    return ycrcb_to_rgb(ycrcb.astype(np.float64))

  return _by_rows(convert, [luma, chroma], 3)


def split_luma_chroma(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
  """Splits an image into its luma (H, W, 1) and chroma (H, W, 2), ``None`` for a grey image.

  A grey image carries no chroma: ``None`` tells the colour rules (docs/DESIGN.md §3) to take the
  chroma from the colour sources only. Colour is converted in float64 and returned as float32,
  without clipping.

  Args:
    image: numpy (H, W), (H, W, 1) or (H, W, 3) in [0, 1].

  Returns:
    ``(y, crcb)``, float32.
  """
  image = np.asarray(image, np.float32)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"An image must be (H, W), (H, W, 1) or (H, W, 3), got shape {image.shape}.")
  if image.shape[-1] == 1:
    return image, None
  ycrcb = _by_rows(lambda rgb: rgb_to_ycrcb(rgb.astype(np.float64)), [image], 3)
  return ycrcb[..., :1], ycrcb[..., 1:]
