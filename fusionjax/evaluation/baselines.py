"""Pixel-wise baselines computed by the project, so they land in the same tables as the networks.

``average`` and ``max`` fuse the luma (BT.601 Y) of the sources per pixel by the mean or the maximum.
Their chroma follows the same rule as the networks' output (docs/DESIGN.md §3: the weighted average of the
colour sources' CrCb, or the one colour source's CrCb, or none): the rule of a pixel-wise maximum
applied to chroma would pick the channel furthest from 0 rather than from neutral grey and shift
hues, and sharing the network's chroma rule means a baseline and a network differ in luma only,
which is what the luma metrics compare.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

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


#: Baseline name -> fusion function (``--method NAME`` of ``evaluate.py``).
BASELINES: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]] = {
  "average": average_fusion,
  "max": max_fusion,
}
