"""Rule-based baselines computed by the project, so they land in the same tables as the networks.

``average`` and ``max`` fuse the luma (BT.601 Y) of the sources per pixel by the mean or the maximum.
``mertens`` is exposure fusion (Mertens, Kautz and Van Reeth, Pacific Graphics 2007) on the luma:
per-pixel weights from local contrast and well-exposedness, blended in a Laplacian pyramid; it takes
any number of sources in one step and is the classical reference for exposure sequences.
Their chroma follows the same rule as the networks' output (docs/DESIGN.md §3: the weighted average of the
colour sources' CrCb, or the one colour source's CrCb, or none): the rule of a pixel-wise maximum
applied to chroma would pick the channel furthest from 0 rather than from neutral grey and shift
hues, and sharing the network's chroma rule means a baseline and a network differ in luma only,
which is what the luma metrics compare.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from fusionjax import color
from fusionjax.color import split_luma_chroma
from fusionjax.inference import check_sources


def _fuse(
  images: Sequence[np.ndarray], luma_rule: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
  check_sources(images)
  split = [split_luma_chroma(image) for image in images]
  luma = luma_rule(np.stack([y for y, _ in split], axis=0)).astype(np.float32)
  chromas = [c for _, c in split if c is not None]
  if not chromas:
    return luma
  chroma = chromas[0] if len(chromas) == 1 else color.fuse_chroma_images(chromas)
  return color.merge_luma_chroma(luma, chroma)


def average_fusion(images: Sequence[np.ndarray]) -> np.ndarray:
  """Per-pixel mean of the sources' luma; chroma by the network's rule.

  Args:
    images: float32 (H, W, 1 | 3) in [0, 1], one size.

  Returns:
    (H, W, 3) when any source is colour, else (H, W, 1).
  """
  return _fuse(images, lambda lumas: lumas.mean(axis=0))


def max_fusion(images: Sequence[np.ndarray]) -> np.ndarray:
  """Per-pixel maximum of the sources' luma; chroma by the network's rule.

  Args:
    images: float32 (H, W, 1 | 3) in [0, 1], one size.

  Returns:
    (H, W, 3) when any source is colour, else (H, W, 1).
  """
  return _fuse(images, lambda lumas: lumas.max(axis=0))


# Mertens et al.'s settings: well-exposedness exp(-(Y - 0.5)^2 / (2 sigma^2)), sigma = 0.2, and
# contrast and well-exposedness weighted equally (exponents 1); saturation needs colour and is left
# out of this luma rule.
_EXPOSEDNESS_SIGMA = 0.2
# The 5-tap binomial filter of Burt and Adelson's pyramid.
_PYRAMID_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _smooth(x: np.ndarray, gain: float = 1.0) -> np.ndarray:
  for axis in (0, 1):
    x = ndimage.correlate1d(x, _PYRAMID_TAPS * gain, axis=axis, mode="reflect")
  return x


def _expand(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  up = np.zeros(shape, x.dtype)
  up[::2, ::2] = x
  return _smooth(up, gain=2.0)


def _pyramid_blend(lumas: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """Sum over k of weights[k] * lumas[k], band by band: Gaussian pyramid of each weight map times
  the Laplacian pyramid of its image, collapsed (Burt and Adelson 1983)."""
  levels = max(1, int(np.log2(min(lumas.shape[1:3]))) - 1)
  blended = None
  for image, weight in zip(lumas, weights):
    bands, gauss = [], weight
    for _ in range(levels - 1):
      smaller = _smooth(image)[::2, ::2]
      bands.append((image - _expand(smaller, image.shape)) * gauss)
      image, gauss = smaller, _smooth(gauss)[::2, ::2]
    bands.append(image * gauss)
    blended = bands if blended is None else [b + n for b, n in zip(blended, bands)]
  fused = blended[-1]
  for band in reversed(blended[:-1]):
    fused = _expand(fused, band.shape) + band
  return fused


def _mertens_luma(lumas: np.ndarray) -> np.ndarray:
  y = lumas[..., 0].astype(np.float64)  # (K, H, W)
  contrast = np.abs(np.stack([ndimage.laplace(image, mode="reflect") for image in y]))
  exposedness = np.exp(-((y - 0.5) ** 2) / (2.0 * _EXPOSEDNESS_SIGMA**2))
  weights = contrast * exposedness + 1e-12
  weights /= weights.sum(axis=0, keepdims=True)
  return np.clip(_pyramid_blend(y, weights), 0.0, 1.0)[..., None]


def mertens_fusion(images: Sequence[np.ndarray]) -> np.ndarray:
  """Exposure fusion of the sources' luma (see the module docstring); chroma by the network's rule.

  Args:
    images: float32 (H, W, 1 | 3) in [0, 1], one size, two or more.

  Returns:
    (H, W, 3) when any source is colour, else (H, W, 1).
  """
  return _fuse(images, _mertens_luma)


#: Baseline name -> fusion function (``--method NAME`` of ``evaluate.py``).
BASELINES: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]] = {
  "average": average_fusion,
  "max": max_fusion,
  "mertens": mertens_fusion,
}
