"""Large images in overlapping tiles, blended without seams (numpy only).

:func:`tiled_apply` runs an image-to-image function on tiles of bounded size, so memory stays bounded
whatever the image size: tile origins lie on a grid aligned to the network's window and pooling
sizes (``align``), every tile has one shape (one compilation), and the tiles are blended with a
raised-cosine partition of unity (:func:`blend_weights`), so no tile border shows in the result.
:func:`fusionjax.inference.fuse_images` fuses large images through it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

#: Default tile side in pixels. Images up to this size on both sides are fused in one piece. At
#: width 32 the forward pass of a 1024 x 1024 tile needs a few GiB; all images of the bundled
#: benchmark sets except a few MEFB and SICE scenes fit in one tile.
DEFAULT_TILE_SIZE = 1024

#: Default overlap between neighbouring tiles. Its outer quarters are discarded and its middle half
#: is a cosine cross-fade, so each kept pixel sees at least 32 pixels of real context beyond the tile
#: border, more than the 8x8-pooled ConvNeXt and the shifted windows of one unfolding unit reach in
#: practice (the tests measure the difference to the untiled output).
DEFAULT_TILE_OVERLAP = 128

#: Default side of the tiles that an image larger than the tile size is cut into. The work is about
#: the same as with larger tiles (more overlap, but less padding beyond the image), while one network
#: call holds a quarter of the pixels of a 1024 x 1024 tile, and its temporary memory with them.
DEFAULT_SPLIT_SIZE = 512


@dataclasses.dataclass(frozen=True)
class TileGrid:
  """Where the tiles of one image axis start.

  Attributes:
    length: the image length along the axis.
    padded: the length after reflection padding (covers every tile).
    tile: the tile length along the axis (``padded`` when the axis is not split).
    starts: the first index of every tile.
    overlap: the overlap between neighbouring tiles (0 when the axis is not split).
  """

  length: int
  padded: int
  tile: int
  starts: tuple[int, ...]
  overlap: int


def round_up(value: int, multiple: int) -> int:
  """``value`` rounded up to a multiple of ``multiple``."""
  return -(-int(value) // multiple) * multiple


def tile_grid(
  length: int, tile_size: int, overlap: int, align: int, split_size: int | None = None
) -> TileGrid:
  """Splits one axis into aligned, overlapping tiles.

  Every tile of a split axis has the full ``tile_size``, so one compiled function serves every
  large image, whatever its size; the last tile may reach far into the reflection padding (an image
  of 1030 px in 1024-px tiles computes 1920 px), which costs time but not accuracy, since only the
  tile's pixels inside the image are kept.

  Args:
    length: the image length along the axis.
    tile_size: the longest axis kept in one piece (rounded up to a multiple of ``align``).
    overlap: overlap between neighbouring tiles (rounded up to a multiple of ``align``).
    align: tile starts and lengths are multiples of this.
    split_size: the tile length of an axis longer than ``tile_size`` (default ``tile_size``;
      rounded up to ``align``, and to more than twice the overlap).

  Returns:
    A :class:`TileGrid`; a single tile of ``length`` rounded up to ``align`` when it fits.
  """
  if length <= 0:
    raise ValueError(f"Image axis length must be positive, got {length}.")
  whole = round_up(tile_size, align)
  overlap = round_up(overlap, align) if overlap > 0 else 0
  if length <= whole:
    padded = round_up(length, align)
    return TileGrid(length, padded, padded, (0,), 0)
  tile = round_up(min(split_size or tile_size, tile_size), align)
  tile = max(tile, round_up(2 * overlap + 1, align))
  stride = tile - overlap
  count = -(-(length - tile) // stride) + 1
  starts = tuple(k * stride for k in range(count))
  return TileGrid(length, starts[-1] + tile, tile, starts, overlap)


def check_tiling(tile_size: int, overlap: int) -> None:
  """Raises ValueError unless ``tile_size`` >= 1 and 0 <= 2 * ``overlap`` < ``tile_size``."""
  if int(tile_size) < 1:
    raise ValueError(f"tile_size must be positive, got {tile_size}.")
  if int(overlap) < 0:
    raise ValueError(f"tile overlap must be >= 0, got {overlap}.")
  if 2 * int(overlap) >= int(tile_size):
    raise ValueError(
      f"tile overlap ({overlap}) must be less than half the tile size ({tile_size}); "
      "use a larger --tile_size or a smaller --overlap."
    )


def blend_weights(grid: TileGrid, index: int) -> np.ndarray:
  """The 1-D blending weights of tile ``index`` along one axis.

  Inside an overlap of length O the outer quarter next to each tile's border gets weight 0 (those
  pixels see the least context), the middle half a raised-cosine cross-fade, so the weights of two
  neighbours sum to exactly 1 everywhere (a partition of unity); at the image border a tile keeps
  weight 1.

  Args:
    grid: the axis' tile grid.
    index: which tile.

  Returns:
    float64 array of length ``grid.tile``.
  """
  weights = np.ones(grid.tile, np.float64)
  o = grid.overlap
  if o == 0 or len(grid.starts) == 1:
    return weights
  quarter = o // 4
  ramp_length = o - 2 * quarter
  t = np.arange(ramp_length, dtype=np.float64)
  ramp = 0.5 - 0.5 * np.cos(np.pi * (t + 0.5) / ramp_length)  # rises from ~0 to ~1
  rising = np.concatenate([np.zeros(quarter), ramp, np.ones(quarter)])
  if index > 0:
    weights[:o] *= rising
  if index < len(grid.starts) - 1:
    # ramp[::-1] = 1 - ramp, so the falling edge complements the next tile's rising edge.
    weights[-o:] *= rising[::-1]
  return weights


def reflect_pad(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """Pads (H, W, C) at the bottom/right by reflection, as the networks pad their inputs."""
  pad_h, pad_w = height - array.shape[0], width - array.shape[1]
  if pad_h == 0 and pad_w == 0:
    return array
  # numpy reflects repeatedly when the pad is longer than the axis; a length-1 axis cannot be
  # reflected and is repeated instead.
  mode_h = "reflect" if array.shape[0] > 1 else "edge"
  mode_w = "reflect" if array.shape[1] > 1 else "edge"
  array = np.pad(array, ((0, pad_h), (0, 0), (0, 0)), mode=mode_h)
  return np.pad(array, ((0, 0), (0, pad_w), (0, 0)), mode=mode_w)


def tiled_apply(
  fn: Callable[..., np.ndarray],
  inputs: Sequence[np.ndarray],
  *,
  tile_size: int = DEFAULT_TILE_SIZE,
  overlap: int = DEFAULT_TILE_OVERLAP,
  align: int = 1,
  batch: int | None = None,
  split_size: int | None = None,
  progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
  """Applies an image-to-image function tile by tile and blends the tiles without seams.

  The inputs are padded by reflection (bottom/right) to a size that the aligned tiles cover; every
  tile has the same shape, so ``fn`` compiles once. Tiles are processed ``batch`` at a time, so
  memory is bounded by one call of ``fn`` on ``batch`` tiles plus the full-size inputs and output
  (about ``(4 + sum of input channels + output channels) * H * W * 4`` bytes here), whatever the
  image size.

  Args:
    fn: with ``batch=None``, maps tiles ``(h, w, C_i)`` of each input to an array
      ``(h, w, C_out)``; with an integer ``batch``, maps stacks of ``n <= batch`` tiles
      ``(n, h, w, C_i)`` to ``(n, h, w, C_out)``.
    inputs: arrays (H, W, C_i) of one common H x W.
    tile_size: an image no larger than this on both sides is one tile; a longer axis is cut into
      tiles of ``split_size``.
    overlap: overlap between neighbouring tiles (see :func:`blend_weights`).
    align: tile origins and sizes are multiples of this (the network's window/pooling multiple, so
      that every tile sees the same window partition and pooling cells as the whole image).
    batch: tiles per call of ``fn`` (see ``fn``); None for single-tile calls.
    split_size: tile side on a split axis; default ``min(tile_size, DEFAULT_SPLIT_SIZE)``.
    progress: called as ``progress(tiles_done, tiles_total)`` after every call of ``fn``.

  Returns:
    float32 array (H, W, C_out).
  """
  check_tiling(tile_size, overlap)
  if batch is not None and int(batch) < 1:
    raise ValueError(f"tile batch must be a positive integer, got {batch}.")
  if not inputs:
    raise ValueError("tiled_apply needs at least one input.")
  height, width = inputs[0].shape[:2]
  for array in inputs:
    if array.shape[:2] != (height, width):
      raise ValueError(f"tiled_apply inputs must share H x W, got {[a.shape for a in inputs]}.")
  split_size = split_size or min(int(tile_size), DEFAULT_SPLIT_SIZE)
  rows = tile_grid(height, tile_size, overlap, align, split_size)
  cols = tile_grid(width, tile_size, overlap, align, split_size)
  padded = [reflect_pad(np.asarray(a, np.float32), rows.padded, cols.padded) for a in inputs]
  call = fn if batch is not None else (lambda *tiles: np.asarray(fn(*(t[0] for t in tiles)))[None])
  tiles = [(i, j) for i in range(len(rows.starts)) for j in range(len(cols.starts))]
  if len(tiles) == 1:
    out = np.asarray(call(*(a[None] for a in padded)), np.float32)[0][:height, :width]
    if progress is not None:
      progress(1, 1)
    return out
  output = None
  total = np.zeros((rows.padded, cols.padded, 1), np.float64)
  step = int(batch or 1)
  for first in range(0, len(tiles), step):
    chunk = tiles[first : first + step]
    windows = [
      (
        slice(rows.starts[i], rows.starts[i] + rows.tile),
        slice(cols.starts[j], cols.starts[j] + cols.tile),
      )
      for i, j in chunk
    ]
    outs = np.asarray(call(*(np.stack([a[w] for w in windows]) for a in padded)), np.float64)
    for (i, j), window, tile_out in zip(chunk, windows, outs):
      weight = np.outer(blend_weights(rows, i), blend_weights(cols, j))[..., None]
      if output is None:
        output = np.zeros((rows.padded, cols.padded, tile_out.shape[-1]), np.float64)
      output[window] += weight * tile_out
      total[window] += weight
    if progress is not None:
      progress(first + len(chunk), len(tiles))
  # The weights are a partition of unity; dividing guards against rounding only (in place: the
  # accumulators are the largest arrays here).
  output /= total
  return output[:height, :width].astype(np.float32)
