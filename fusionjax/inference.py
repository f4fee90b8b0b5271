"""Fusing images with a loaded model: colour, large images (tiling) and more than two sources.

The networks fuse luma only (paper §3.1). :func:`fuse_images` takes float images (H, W, 1 | 3) in
[0, 1], fuses their BT.601 Y channels with the network and rebuilds colour by the rules of the
design brief (§3):

- two colour sources: chroma by :func:`fusionjax.color.fuse_chroma`, or by the checkpoint's
  ColorNet when it has one (only the multi-exposure stage trains one);
- one colour and one grey source (infrared, CT, MRI): the colour source's CrCb, since a grey
  image carries no chroma;
- only grey sources: a grey (H, W, 1) result.

More than two sources (multi-exposure sequences, Lytro triples) are fused sequentially in the order
given, ``((I1 ⊕ I2) ⊕ I3) ⊕ ...``: the network is trained on pairs and has exactly two inputs, and
the fused image of a pair is itself a well-formed image of the scene, so it is a valid first input
of the next pair. The chroma of K colour sources is :func:`fusionjax.color.fuse_chroma_many` (the
pairwise weighted average generalised to K terms, order-free); with a ColorNet and only colour
sources, ColorNet is applied along the same sequence, each step with the fused luma so far.

Large images are fused in overlapping tiles (:func:`tiled_apply`) so memory stays bounded: tile
origins lie on a grid aligned to the network's window and pooling sizes, and tiles are blended with
a raised-cosine partition of unity, so no tile border shows in the result.

Padding and compilation: the networks pad their input (reflection, bottom/right) to a multiple of
their windows and pooling factors (``model.multiple``). Inference pads to the same multiple the same
way before calling the jitted network, so the result equals ``model.apply`` on the image itself.
``pad_multiple`` pads further (e.g. 64) so that images of many sizes share fewer compiled shapes,
worth it for benchmark runs on hardware where compiling is slow; the price is a slightly different
result: the extra reflected rows and columns change the pixels near the bottom/right edges and,
through the unfolding unit's per-image RMS scaling, every pixel by a little.

Compiled forward functions are cached per model architecture (and, by ``jax.jit``, per input
shape): parameters are arguments, never constants, so reloading a checkpoint does not recompile.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fusionjax import color
from fusionjax import imageio
from fusionjax import weights

#: Default tile side in pixels. Images up to this size on both sides are fused in one piece. At
#: width 32 the forward pass of a 1024 x 1024 tile needs a few GiB, which fits the CPU machines
#: this is developed on and every current accelerator; all images of the bundled benchmark sets
#: except a few MEFB and SICE scenes fit in one tile.
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


def _round_up(value: int, multiple: int) -> int:
  return -(-int(value) // multiple) * multiple


def tile_grid(length: int, tile_size: int, overlap: int, align: int,
              split_size: int | None = None) -> TileGrid:
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
  whole = _round_up(tile_size, align)
  overlap = _round_up(overlap, align) if overlap > 0 else 0
  if length <= whole:
    padded = _round_up(length, align)
    return TileGrid(length, padded, padded, (0,), 0)
  tile = _round_up(min(split_size or tile_size, tile_size), align)
  tile = max(tile, _round_up(2 * overlap + 1, align))
  stride = tile - overlap
  count = -(-(length - tile) // stride) + 1
  starts = tuple(k * stride for k in range(count))
  return TileGrid(length, starts[-1] + tile, tile, starts, overlap)


def _check_tiling(tile_size: int, overlap: int) -> None:
  if int(tile_size) < 1:
    raise ValueError(f"tile_size must be positive, got {tile_size}.")
  if int(overlap) < 0:
    raise ValueError(f"tile overlap must be >= 0, got {overlap}.")
  if 2 * int(overlap) >= int(tile_size):
    raise ValueError(f"tile overlap ({overlap}) must be less than half the tile size ({tile_size}); "
                     "use a larger --tile-size or a smaller --overlap.")


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


def _reflect_pad(array: np.ndarray, height: int, width: int) -> np.ndarray:
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


def tiled_apply(fn: Callable[..., np.ndarray], inputs: Sequence[np.ndarray], *,
                tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_TILE_OVERLAP,
                align: int = 1, batch: int | None = None, split_size: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
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
  _check_tiling(tile_size, overlap)
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
  padded = [_reflect_pad(np.asarray(a, np.float32), rows.padded, cols.padded) for a in inputs]
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
    chunk = tiles[first:first + step]
    windows = [(slice(rows.starts[i], rows.starts[i] + rows.tile),
                slice(cols.starts[j], cols.starts[j] + cols.tile)) for i, j in chunk]
    outs = np.asarray(call(*(np.stack([a[w] for w in windows]) for a in padded)), np.float64)
    for (i, j), window, tile_out in zip(chunk, windows, outs):
      weight = np.outer(blend_weights(rows, i), blend_weights(cols, j))[..., None]
      if output is None:
        output = np.zeros((rows.padded, cols.padded, tile_out.shape[-1]), np.float64)
      output[window] += weight * tile_out
      total[window] += weight
    if progress is not None:
      progress(first + len(chunk), len(tiles))
  # The weights are a partition of unity; dividing guards against rounding only.
  return (output / total)[:height, :width].astype(np.float32)


def terminal_progress(label: str = "tiles", stream=None) -> Callable[[int, int], None] | None:
  """A ``progress`` callback drawing a bar (done / total, rate, ETA) on a terminal, else None.

  Args:
    label: what is counted.
    stream: where to draw (default ``sys.stderr``); nothing is drawn unless it is a terminal, and
      nothing for a single tile.

  Returns:
    A callback for :func:`tiled_apply` / :func:`fuse_images`, or None when ``stream`` is no TTY.
  """
  import sys
  stream = stream if stream is not None else sys.stderr
  if not getattr(stream, "isatty", lambda: False)():
    return None
  state: dict = {}

  def update(done: int, total: int) -> None:
    if total <= 1:
      return
    bar = state.get("bar")
    if bar is None or bar.total != total:
      from tqdm import tqdm
      if bar is not None:
        bar.close()
      bar = state["bar"] = tqdm(total=total, unit=label[:-1] if label.endswith("s") else label, desc=label,
                                file=stream, leave=False)
      bar.n = 0
    bar.update(done - bar.n)
    if done >= total:
      bar.close()
      state.pop("bar")

  return update


def _as_variables(params: Any) -> Mapping:
  """Accepts either a ``{'params': ...}`` variables dict or the bare parameter tree."""
  if isinstance(params, Mapping) and "params" in params:
    return params
  return {"params": params}


def _find_solver_stats(tree: Any):
  """Finds the ``solver_stats`` sown anywhere in an intermediates tree (None when absent)."""
  if isinstance(tree, Mapping):
    if "solver_stats" in tree:
      stats = tree["solver_stats"]
      return stats[0] if isinstance(stats, (tuple, list)) and stats else stats
    for value in tree.values():
      found = _find_solver_stats(value)
      if found is not None:
        return found
  return None


def _stats_to_dict(stats) -> dict | None:
  if stats is None:
    return None
  out = {}
  for name in ("num_steps", "abs_residual", "rel_residual", "converged", "finite", "result"):
    value = getattr(stats, name, None)
    if value is None:
      continue
    value = np.asarray(value)
    if value.dtype == bool:
      out[name] = bool(value.all())
    elif name == "result":
      out[name] = int(value.max())  # fusionjax.deq.RESULTS codes rise with severity: the worst one.
    else:
      out[name] = float(value.max())
  return out


class _CompiledModel:
  """The jitted forward functions of one architecture (parameters are inputs, not constants)."""

  def __init__(self, model, colornet):
    import jax  # Deferred: numpy-only users of this module (e.g. tiling) need no JAX.

    def network(variables, y1, y2):
      fused, aux = model.apply(variables, y1, y2, mutable=["intermediates"])
      return fused, _find_solver_stats(aux.get("intermediates", {}))

    self.network = jax.jit(network)
    self.colornet = None
    if colornet is not None:
      self.colornet = jax.jit(lambda variables, c1, c2, y: colornet.apply(variables, c1, c2, y))
    self.seen_shapes: set = set()


_COMPILED: dict = {}
_COMPILED_LOCK = threading.Lock()


def _compiled(fusion_model) -> _CompiledModel:
  """Returns the cached jitted functions for the model's architecture."""
  key = (type(fusion_model.model).__name__, repr(fusion_model.model),
         repr(fusion_model.colornet) if fusion_model.colornet is not None else None)
  with _COMPILED_LOCK:
    if key not in _COMPILED:
      _COMPILED[key] = _CompiledModel(fusion_model.model, fusion_model.colornet)
    return _COMPILED[key]


def network_align(fusion_model, pad_multiple: int | None = None) -> int:
  """The multiple that inputs are padded to and tiles aligned on.

  Args:
    fusion_model: the model; its network's ``multiple`` (windows and pooling) always divides the result.
    pad_multiple: an optional coarser multiple (shape bucketing, see the module docstring).

  Returns:
    ``lcm(model.multiple, pad_multiple)``.
  """
  own = int(getattr(fusion_model.model, "multiple", 1) or 1)
  if pad_multiple is not None and int(pad_multiple) < 1:
    raise ValueError(f"pad_multiple must be a positive integer, got {pad_multiple}.")
  return math.lcm(int(pad_multiple or 1), own)


@dataclasses.dataclass
class LumaFusion:
  """Result of :func:`fuse_luma`.

  Attributes:
    luma: (H, W, 1) float32 fused Y in [0, 1].
    solver_stats: the deep-equilibrium solver's statistics (worst over tiles and steps), or None for
      networks without a solver: ``num_steps``, ``abs_residual``, ``rel_residual`` (max),
      ``converged``, ``finite`` (all), ``result`` (the worst ``fusionjax.deq.RESULTS`` code).
    compiled: whether a new input shape had to be compiled for this call (its wall time then
      includes compilation).
    tiles: how many tiles each pairwise fusion used.
  """

  luma: np.ndarray
  solver_stats: dict | None
  compiled: bool
  tiles: int


def _merge_stats(a: dict | None, b: dict | None) -> dict | None:
  if a is None or b is None:
    return a or b
  merged = dict(a)
  for name, value in b.items():
    merged[name] = (merged[name] and value) if isinstance(value, bool) else max(merged.get(name, value), value)
  return merged


def _check_luma(y: np.ndarray, name: str) -> np.ndarray:
  y = np.asarray(y, np.float32)
  if y.ndim == 2:
    y = y[..., None]
  if y.ndim != 3 or y.shape[-1] != 1:
    raise ValueError(f"{name} must be a luma image (H, W) or (H, W, 1), got shape {y.shape}.")
  return y


def fuse_luma(fusion_model, lumas: Sequence[np.ndarray], *, tile_size: int = DEFAULT_TILE_SIZE,
              tile_overlap: int = DEFAULT_TILE_OVERLAP, pad_multiple: int | None = None,
              tile_batch: int = 1, progress: Callable[[int, int], None] | None = None) -> LumaFusion:
  """Fuses two or more luma images with the network, sequentially in the order given.

  Args:
    fusion_model: a :class:`fusionjax.checkpoints.FusionModel`.
    lumas: arrays (H, W) or (H, W, 1) in [0, 1] of one size, ordered as the task expects
      (near/far, under/over, visible/infrared, MRI/other).
    tile_size: images larger than this on either side are fused in tiles.
    tile_overlap: overlap of neighbouring tiles.
    pad_multiple: pad inputs to a multiple of this (and of the network's own multiple) to share
      compiled shapes; ``None`` pads exactly as the network does (see the module docstring).
    tile_batch: tiles fused per network call (memory grows with it; the solver stops each image
      on its own, so batching does not change the result).
    progress: ``progress(tiles_done, tiles_total)`` per network call (see :func:`terminal_progress`).

  Returns:
    A :class:`LumaFusion`.
  """
  lumas = [_check_luma(y, f"source {k + 1}") for k, y in enumerate(lumas)]
  _check_same_size(lumas)
  if len(lumas) < 2:
    raise ValueError(f"Fusion needs at least two sources, got {len(lumas)}.")
  _check_tiling(tile_size, tile_overlap)
  compiled = _compiled(fusion_model)
  variables = _as_variables(fusion_model.params)
  align = network_align(fusion_model, pad_multiple)
  stats_seen: list = []
  new_shape = False
  tile_count = 0

  def run(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    nonlocal new_shape, tile_count
    key = ("network",) + t1.shape[1:]
    if key not in compiled.seen_shapes:
      compiled.seen_shapes.add(key)
      new_shape = True
    tile_count += t1.shape[0]
    fused, stats = compiled.network(variables, t1, t2)
    stats_seen.append(_stats_to_dict(stats))
    return np.asarray(fused)

  fused = lumas[0]
  for nxt in lumas[1:]:
    tile_count = 0
    fused = tiled_apply(run, [fused, nxt], tile_size=tile_size, overlap=tile_overlap, align=align,
                        batch=tile_batch, progress=progress)
    fused = np.clip(fused, 0.0, 1.0)
  merged = None
  for stats in stats_seen:
    merged = _merge_stats(merged, stats)
  return LumaFusion(luma=fused, solver_stats=merged, compiled=new_shape, tiles=tile_count)


def split_luma_chroma(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
  """Splits an image into its luma (H, W, 1) and chroma (H, W, 2) (``None`` for grey images).

  Args:
    image: (H, W), (H, W, 1) or (H, W, 3) in [0, 1].

  Returns:
    ``(y, crcb)`` in [0, 1].
  """
  image = np.asarray(image, np.float32)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"An image must be (H, W), (H, W, 1) or (H, W, 3), got shape {image.shape}.")
  if image.shape[-1] == 1:
    return image, None
  ycrcb = color.rgb_to_ycrcb(image.astype(np.float64)).astype(np.float32)
  return ycrcb[..., :1], ycrcb[..., 1:]


def _check_same_size(images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> None:
  sizes = [tuple(np.shape(a)[:2]) for a in images]
  if len(set(sizes)) > 1:
    labels = names or [f"image {k + 1}" for k in range(len(images))]
    listing = ", ".join(f"{label}: {h}x{w} (HxW)" for label, (h, w) in zip(labels, sizes))
    raise ValueError(f"All sources must have the same size, got {listing}. Register and resize the "
                     "sources to a common size first.")


def check_sources(images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> None:
  """Raises ValueError unless there are >= 2 images (H, W, 1 | 3) of one size with values in [0, 1].

  Args:
    images: the sources.
    names: labels for the error message (e.g. file names).
  """
  if len(images) < 2:
    raise ValueError(f"Fusion needs at least two source images, got {len(images)}.")
  labels = list(names) if names is not None else [f"image {k + 1}" for k in range(len(images))]
  for label, image in zip(labels, images):
    shape = np.shape(image)
    if len(shape) != 3 or shape[-1] not in (1, 3):
      raise ValueError(f"{label} must be (H, W, 1) or (H, W, 3), got shape {shape}.")
    array = np.asarray(image)
    if array.size and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0):
      raise ValueError(f"{label} must hold finite values in [0, 1] (got range "
                       f"[{np.nanmin(array):.3g}, {np.nanmax(array):.3g}]); scale 8-bit images by 1/255.")
  _check_same_size(images, labels)


def fuse_chroma_sources(fusion_model, chromas: Sequence[np.ndarray | None], lumas_so_far: Sequence[np.ndarray],
                        *, use_colornet: bool = True, tile_size: int = DEFAULT_TILE_SIZE,
                        tile_overlap: int = DEFAULT_TILE_OVERLAP, pad_multiple: int | None = None
                        ) -> np.ndarray | None:
  """The fused chroma of the sources by the rules in the module docstring.

  Args:
    fusion_model: the model (its ColorNet, if any, is used when allowed).
    chromas: per source (H, W, 2) chroma, or ``None`` for grey sources.
    lumas_so_far: the fused luma after each pairwise step (``len(chromas) - 1`` arrays); ColorNet
      step k sees the fused luma of sources 1..k+1.
    use_colornet: use the checkpoint's ColorNet when it has one and all sources are colour.
    tile_size: tile side for ColorNet on large images.
    tile_overlap: tile overlap for ColorNet.
    pad_multiple: pad ColorNet's inputs to a multiple of this; ``None`` runs it at the image's own
      size (it is convolutional and needs no padding).

  Returns:
    (H, W, 2) chroma in [0, 1], or ``None`` when every source is grey.
  """
  coloured = [c for c in chromas if c is not None]
  if not coloured:
    return None
  if len(coloured) == 1:
    return coloured[0]
  colornet = getattr(fusion_model, "colornet", None)
  if use_colornet and colornet is not None and len(coloured) == len(chromas):
    compiled = _compiled(fusion_model)
    variables = _as_variables(fusion_model.colornet_params)
    align = int(pad_multiple or 1)

    def run(c1, c2, y):
      compiled.seen_shapes.add(("colornet",) + c1.shape[1:])
      return np.asarray(compiled.colornet(variables, c1, c2, y))

    fused = chromas[0]
    for nxt, luma in zip(chromas[1:], lumas_so_far):
      fused = tiled_apply(run, [fused, nxt, luma], tile_size=tile_size, overlap=tile_overlap, align=align,
                          batch=1)
      fused = np.clip(fused, 0.0, 1.0)
    return fused
  return np.asarray(color.fuse_chroma_many([c.astype(np.float64) for c in coloured]), np.float32)


def fuse_images(fusion_model, images: Sequence[np.ndarray], *, tile_size: int = DEFAULT_TILE_SIZE,
                tile_overlap: int = DEFAULT_TILE_OVERLAP, grey: bool = False,
                use_colornet: bool = True, pad_multiple: int | None = None, tile_batch: int = 1,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
  """Fuses two or more registered images of one size with a fusion network.

  Args:
    fusion_model: a :class:`fusionjax.checkpoints.FusionModel` (from ``load_fusion_model`` or built
      from ``create_model`` + ``init``).
    images: float arrays (H, W, 1) or (H, W, 3) in [0, 1], all of the same H x W, in the order
      the task expects (near/far, under/over, visible/infrared, MRI/other). More than two are fused
      sequentially (see the module docstring).
    tile_size: images larger than this on either side are fused in overlapping tiles.
    tile_overlap: overlap of neighbouring tiles.
    grey: return the fused luma only, even for colour sources.
    use_colornet: use the checkpoint's ColorNet (if any) for the chroma of colour sources.
    pad_multiple: coarser input padding to share compiled shapes (``None``: exact, see the module
      docstring).
    tile_batch: tiles per network call on large images (see :func:`fuse_luma`).
    progress: ``progress(tiles_done, tiles_total)`` callback (see :func:`terminal_progress`).

  Returns:
    float32 (H, W, 3) RGB when any source is colour (and ``grey`` is false), else (H, W, 1).
  """
  return fuse_images_with_info(fusion_model, images, tile_size=tile_size, tile_overlap=tile_overlap,
                               grey=grey, use_colornet=use_colornet, pad_multiple=pad_multiple,
                               tile_batch=tile_batch, progress=progress)[0]


def fuse_images_with_info(fusion_model, images: Sequence[np.ndarray], *, tile_size: int = DEFAULT_TILE_SIZE,
                          tile_overlap: int = DEFAULT_TILE_OVERLAP, grey: bool = False,
                          use_colornet: bool = True, pad_multiple: int | None = None,
                          tile_batch: int = 1, progress: Callable[[int, int], None] | None = None
                          ) -> tuple[np.ndarray, LumaFusion]:
  """:func:`fuse_images` that also returns the :class:`LumaFusion` (solver statistics, compilation).

  Args:
    fusion_model: see :func:`fuse_images`.
    images: see :func:`fuse_images`.
    tile_size: see :func:`fuse_images`.
    tile_overlap: see :func:`fuse_images`.
    grey: see :func:`fuse_images`.
    use_colornet: see :func:`fuse_images`.
    pad_multiple: see :func:`fuse_images`.
    tile_batch: see :func:`fuse_images`.
    progress: see :func:`fuse_images`.

  Returns:
    ``(fused image, luma fusion info)``.
  """
  check_sources(images)
  _check_tiling(tile_size, tile_overlap)
  shapes_before = len(_compiled(fusion_model).seen_shapes)
  split = [split_luma_chroma(image) for image in images]
  lumas = [y for y, _ in split]
  chromas = [c for _, c in split]
  if len(lumas) == 2 or grey or all(c is None for c in chromas) or fusion_model.colornet is None:
    info = fuse_luma(fusion_model, lumas, tile_size=tile_size, tile_overlap=tile_overlap,
                     pad_multiple=pad_multiple, tile_batch=tile_batch, progress=progress)
    steps = [info.luma] if len(lumas) == 2 else None
  else:
    # ColorNet on a sequence needs the fused luma after every pairwise step.
    steps, info = [], None
    fused = lumas[0]
    for nxt in lumas[1:]:
      step = fuse_luma(fusion_model, [fused, nxt], tile_size=tile_size, tile_overlap=tile_overlap,
                       pad_multiple=pad_multiple, tile_batch=tile_batch, progress=progress)
      fused = step.luma
      steps.append(fused)
      info = step if info is None else LumaFusion(fused, _merge_stats(info.solver_stats, step.solver_stats),
                                                 info.compiled or step.compiled, max(info.tiles, step.tiles))
  if grey:
    return info.luma, info
  chroma = fuse_chroma_sources(fusion_model, chromas, steps or [], use_colornet=use_colornet,
                               tile_size=tile_size, tile_overlap=tile_overlap, pad_multiple=pad_multiple)
  # A ColorNet call on a new shape compiles too.
  info.compiled = info.compiled or len(_compiled(fusion_model).seen_shapes) > shapes_before
  if chroma is None:
    return info.luma, info
  rgb = color.ycrcb_to_rgb(np.concatenate([info.luma, chroma], axis=-1).astype(np.float64))
  return rgb.astype(np.float32), info


def stage_for_task(task: str | None) -> str | None:
  """The checkpoint task that serves a fusion task: itself, except 'mif' -> 'meif'.

  Args:
    task: 'mfif', 'meif', 'ivf', 'mif' or None.

  Returns:
    The stage's task (None for None).
  """
  if task is None:
    return None
  task = task.lower()  # Paper §4.5: the stage-2 (multi-exposure) model serves medical pairs.
  return weights.STAGE_OF_TASK.get(task, task)


def load_sources(paths: Sequence[str | os.PathLike]) -> list[np.ndarray]:
  """Reads source images and checks they have one size.

  Args:
    paths: image files (any format Pillow reads).

  Returns:
    float32 arrays (H, W, 1 | 3) in [0, 1].

  Raises:
    FileNotFoundError: a file does not exist.
    ValueError: a file is not an image, or the sizes differ.
  """
  if len(paths) < 2:
    raise ValueError(f"Fusion needs at least two source images, got {len(paths)}.")
  images = [imageio.load_image(p) for p in paths]
  _check_same_size(images, [str(p) for p in paths])
  return images


def fuse_files(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, *, ckpt,
               task: str | None = None, tile_size: int = DEFAULT_TILE_SIZE,
               tile_overlap: int = DEFAULT_TILE_OVERLAP, grey: bool = False) -> Path:
  """Fuses image files and writes the result atomically.

  Every check (sources readable and of one size, output suffix, checkpoint present and of the
  right task) runs before anything is written, and the result is written through
  :func:`fusionjax.imageio.save_image`, so a failure leaves no partial file and leaves an
  existing ``out_path`` untouched.

  Args:
    paths: two or more registered source images of one size.
    out_path: where to write the fused image; its suffix picks the format.
    ckpt: a stage workdir (as written by ``train.py``) or an already loaded ``FusionModel``.
    task: if given ('mfif', 'meif', 'ivf' or 'mif'), the checkpoint must have been trained for it
      ('mif' expects the 'meif' checkpoint, the paper's protocol).
    tile_size: images larger than this on either side are fused in overlapping tiles.
    tile_overlap: overlap of neighbouring tiles.
    grey: write the fused luma only.

  Returns:
    The written path.

  Raises:
    FileNotFoundError: a source or the checkpoint does not exist.
    ValueError: unreadable sources, mismatched sizes, an unknown output suffix, or a checkpoint of
      another task.
  """
  out_path = check_output_path(out_path)
  _check_tiling(tile_size, tile_overlap)
  images = load_sources(paths)
  fusion_model = load_model(ckpt, task=task)
  fused = fuse_images(fusion_model, images, tile_size=tile_size, tile_overlap=tile_overlap, grey=grey)
  return imageio.save_image(out_path, fused)


def check_output_path(out_path: str | os.PathLike, sources: Sequence[str | os.PathLike] = ()) -> Path:
  """Checks that ``out_path`` can name an image file (suffix known, not a folder, not a source).

  Args:
    out_path: the intended output file.
    sources: the source files, none of which may be ``out_path`` (also through a link).

  Returns:
    It as a Path.

  Raises:
    ValueError: no known image suffix, the path is a directory, or it is one of ``sources``.
  """
  out_path = Path(out_path)
  for source in sources:
    if out_path.resolve() == Path(source).resolve() or (
        out_path.exists() and Path(source).exists() and os.path.samefile(out_path, source)):
      raise ValueError(f"Output {out_path} would overwrite source {source}; write the result to another file.")
  if out_path.is_dir():
    raise ValueError(f"Output {out_path} is a directory; give a file name such as {out_path / 'fused.png'}.")
  if not imageio.is_image_file(out_path):
    raise ValueError(f"Output {out_path} has no image suffix; use one of {', '.join(imageio.IMAGE_SUFFIXES)} "
                     "(e.g. fused.png).")
  return out_path


def check_tiling(tile_size: int, tile_overlap: int) -> None:
  """Raises ValueError unless 0 <= 2 * ``tile_overlap`` < ``tile_size``."""
  _check_tiling(tile_size, tile_overlap)


#: The ``ckpt`` value (besides ``None``) that selects the shipped weights.
SHIPPED = "shipped"


def is_shipped(ckpt) -> bool:
  """Whether ``ckpt`` asks for the shipped weights: ``None``, or ``'shipped'`` when no such folder exists."""
  return ckpt is None or (isinstance(ckpt, str) and ckpt == SHIPPED and not Path(SHIPPED).exists())


def load_model(ckpt=None, *, task: str | None = None):
  """Loads a stage checkpoint (or passes a ``FusionModel`` through), checking its task.

  Args:
    ckpt: a stage workdir, its ``checkpoints`` directory, or a ``FusionModel``; ``None`` or ``'shipped'``
      loads the weights shipped with the package (:mod:`fusionjax.weights`) for ``task``.
    task: expected task ('mfif', 'meif', 'ivf', or 'mif' which expects 'meif'); ``None`` accepts any
      (but the shipped weights need it).

  Returns:
    The ``FusionModel``.
  """
  from fusionjax import checkpoints  # Deferred: Orbax is slow to import.
  expected = stage_for_task(task)
  if expected is not None and expected not in checkpoints.TASKS:
    raise ValueError(f"Unknown task {task!r}; use one of {', '.join(checkpoints.TASKS + ('mif',))}.")
  if isinstance(ckpt, checkpoints.FusionModel):
    if expected is not None and ckpt.task != expected:
      raise ValueError(f"The model was trained for task {ckpt.task!r}, but {task!r} needs a {expected!r} "
                       "checkpoint. Point to a checkpoint of the right stage.")
    return ckpt
  if is_shipped(ckpt):
    if expected is None:
      raise ValueError("No checkpoint given: name the task (mfif, meif, ivf or mif) to use the shipped weights, "
                       "or pass the workdir of a trained stage.")
    return checkpoints.load_fusion_model(weights.shipped_checkpoint(expected), expected_task=expected)
  path = Path(ckpt).expanduser()
  if not path.exists():
    raise FileNotFoundError(f"Checkpoint directory {path} does not exist. Pass the --workdir of a finished "
                            "`python train.py` run (e.g. runs/meif).")
  try:
    return checkpoints.load_fusion_model(path, expected_task=expected)
  except ValueError as error:
    if task == "mif" and "needed here" in str(error):
      raise ValueError(f"{error} Medical fusion uses the multi-exposure (meif) stage, as in the paper.") from error
    raise


def count_parameters(tree: Any) -> int:
  """Number of scalars in a parameter pytree (0 for ``None``)."""
  if tree is None:
    return 0
  import jax
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def forward_cost(fusion_model, height: int, width: int, pad_multiple: int | None = None,
                 while_trips: float | None = None) -> dict:
  """FLOPs of the jitted forward pass at one input size, by XLA's cost analysis (nothing is executed).

  The input is padded to the size inference runs at. XLA's ``HloCostAnalysis`` counts the body of a
  loop once, whatever its trip count; FRUFN runs its N units under ``scan`` and EFRUFN its solver
  in a ``while`` loop, so that raw count (``flops_xla``) covers one unit. ``flops`` corrects it:
  each loop body is lowered on its own, costed by XLA, and counted ``trips`` times (``scan``: its
  length; ``while``: ``while_trips``, e.g. the solver's mean number of iterations, or once when not
  given), recursively for nested loops.

  Args:
    fusion_model: the model.
    height: image height.
    width: image width.
    pad_multiple: as in :func:`fuse_images`.
    while_trips: iterations to count for each ``while`` loop (None: once, as XLA does).

  Returns:
    ``{"flops", "flops_xla", "bytes_accessed", "input_size": [h, w], "loops": [{"kind", "trips",
    "body_flops"}], "while_loops": bool, "while_trips"}`` (and ``"colornet_flops"`` when the model
    has a ColorNet).
  """
  import jax
  import jax.numpy as jnp
  align = network_align(fusion_model, pad_multiple)
  h, w = _round_up(height, align), _round_up(width, align)
  y = jax.ShapeDtypeStruct((1, h, w, 1), jnp.float32)
  variables = _as_variables(fusion_model.params)
  model = fusion_model.model
  closed = jax.make_jaxpr(lambda v, a, b: model.apply(v, a, b))(variables, y, y)
  loops: list = []
  flops, xla = _loop_aware_flops(closed, while_trips, loops)
  result = {"flops": flops, "flops_xla": xla["flops"], "bytes_accessed": xla.get("bytes accessed"),
            "input_size": [int(h), int(w)], "loops": loops,
            "while_loops": any(loop["kind"] == "while" for loop in loops), "while_trips": while_trips}
  if fusion_model.colornet is not None:
    ch, cw = _round_up(height, pad_multiple or 1), _round_up(width, pad_multiple or 1)
    c = jax.ShapeDtypeStruct((1, ch, cw, 2), jnp.float32)
    yc = jax.ShapeDtypeStruct((1, ch, cw, 1), jnp.float32)
    lowered = _compiled(fusion_model).colornet.lower(_as_variables(fusion_model.colornet_params), c, c, yc)
    result["colornet_flops"] = _lowered_cost(lowered).get("flops")
  return result


def _xla_cost(closed) -> dict:
  """XLA's cost analysis of a closed jaxpr lowered on its own (loop bodies counted once)."""
  import jax
  from jax.extend import core as jex_core
  args = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
  cost = _lowered_cost(jax.jit(jex_core.jaxpr_as_fun(closed)).lower(*args))
  cost.setdefault("flops", 0.0)
  return cost


def _loops_in(jaxpr):
  """Yields ``(kind, body, trips_or_None)`` for the loops reachable without entering another loop."""
  from jax.extend import core as jex_core
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "scan":
      yield "scan", eqn.params["jaxpr"], int(eqn.params["length"])
    elif name == "while":
      yield "while", eqn.params["body_jaxpr"], None
    elif name != "cond":
      # Calls (pjit, custom_vjp/jvp, remat, ...) are inlined by XLA: look for loops inside.
      for sub in jex_core.jaxprs_in_params(eqn.params):
        yield from _loops_in(sub)


def _loop_aware_flops(closed, while_trips: float | None, record: list) -> tuple[float, dict]:
  """``C(J) = X(J) + sum over loops (trips * C(body) - X(body))``; returns ``(C(J), XLA's cost of J)``."""
  from jax.extend import core as jex_core
  xla = _xla_cost(closed)
  total = xla["flops"]
  for kind, body, trips in _loops_in(closed.jaxpr):
    if not isinstance(body, jex_core.ClosedJaxpr):
      body = jex_core.ClosedJaxpr(body, ())
    count = float(trips if trips is not None else (while_trips if while_trips is not None else 1))
    body_total, body_xla = _loop_aware_flops(body, while_trips, [])
    record.append({"kind": kind, "trips": count, "body_flops": body_total})
    total += count * body_total - body_xla["flops"]
  return total, xla


def _lowered_cost(lowered) -> dict:
  """Cost analysis of the lowered HLO; compiles only when the lowering offers none."""
  # The HLO-level analysis needs no XLA compilation (seconds for these networks on CPU); its
  # FLOP count is that of the compiled program, as fusion moves work without removing any.
  analysis = _cost_dict(lowered.cost_analysis())
  if "flops" not in analysis:
    analysis = _cost_dict(lowered.compile().cost_analysis())
  return analysis


def _cost_dict(analysis) -> dict:
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return {k: float(v) for k, v in (analysis or {}).items() if isinstance(v, (int, float))}


def describe(fusion_model) -> dict:
  """A JSON-able description of a model: class, task, step, path and parameter counts."""
  network = count_parameters(fusion_model.params)
  colornet = count_parameters(fusion_model.colornet_params) if fusion_model.colornet is not None else 0
  return {"network": type(fusion_model.model).__name__, "task": fusion_model.task, "step": fusion_model.step,
          "path": fusion_model.path, "network_params": network, "colornet_params": colornet,
          "params": network + colornet,
          "model_config": json.loads(json.dumps(fusion_model.metadata.get("model"), default=str))
          if fusion_model.metadata else None}
