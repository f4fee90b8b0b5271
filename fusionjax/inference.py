"""Fusing images with a loaded model: colour, large images (tiling) and more than two sources.

The networks fuse luma only (paper §3.1). :func:`fuse_images` takes float images (H, W, 1 | 3) in
[0, 1], fuses their BT.601 Y channels with the network and rebuilds colour by the rules of
docs/DESIGN.md §3 (:func:`fusionjax.color.split_luma_chroma` splits the sources):

- two colour sources: chroma by :func:`fusionjax.color.fuse_chroma`, or by the checkpoint's
  ColorNet when it has one (only the multi-exposure stage trains one);
- one colour and one grey source (infrared, CT, MRI): the colour source's CrCb, since a grey
  image carries no chroma;
- only grey sources: a grey (H, W, 1) result.

More than two sources (multi-exposure sequences, Lytro triples) are fused by one of
:data:`SEQUENCE_RULES` (the network is trained on pairs and has exactly two inputs):

- ``"chain"``, ``((I1 ⊕ I2) ⊕ I3) ⊕ ...`` in the order given: the fused image of a pair is a
  well-formed image of the scene, so it is a valid first input of the next pair. Right for focus
  stacks, where each step adds the regions in focus in the next source.
- ``"adjacent"``, the mean of the fusions of neighbouring sources ``(I1 ⊕ I2, I2 ⊕ I3, ...)``: every
  network call sees two original sources, as in training, and no source passes through the network
  more than twice. Right for exposure sequences ordered from darkest to brightest: a chain feeds the
  network an already fused, well-exposed image as the "under-exposed" input, which it never saw in
  training, and degrades with every frame (``benchmarks/exposure_stacks.py`` measures both).

:func:`default_sequence_rule` picks per task: ``"adjacent"`` for the multi-exposure stage,
``"chain"`` for the others. Both cost ``K - 1`` network calls for K sources, and both equal the
pairwise fusion for two. The chroma of K colour sources is
:func:`fusionjax.color.fuse_chroma_many` (the pairwise weighted average generalised to K terms,
order-free); with a ColorNet and only colour sources, ColorNet is applied to the same pairs as the
luma, each with that pair's fused luma (along the chain, or per neighbouring pair and averaged).

Large images are fused in overlapping tiles (:mod:`fusionjax.tiling`) so memory stays bounded: tile
origins lie on a grid aligned to the network's window and pooling sizes, and tiles are blended with
a raised-cosine partition of unity, so no tile border shows in the result.

The model comes from :func:`fusionjax.stages.load_model`; its cost (parameters, FLOPs) from
:mod:`fusionjax.evaluation.cost`.

Borders: every image is fused with :data:`BORDER` reflected pixels on each side, cropped off after
(the networks' ``border``, :mod:`fusionjax.models.padding`). Without them the first rows and columns
are the only pixels whose convolutions read zero padding, and the shipped stages answer with a
bright frame one to four pixels wide (on the shipped samples the outer 4-pixel band came out up to 27
grey levels above the band inside it; ``tests/test_border.py`` measures it). Training crops use no
border: the network learns on crops, and the border only changes what the outermost pixels see.

Padding and compilation: the networks pad their input (reflection, bottom/right) to a multiple of
their windows and pooling factors (``model.multiple``). Inference pads to the same multiple the same
way before calling the jitted network, so the result equals ``model.clone(border=BORDER).apply`` on
the image itself.
``pad_multiple`` pads further (e.g. 64) so that images of many sizes share fewer compiled shapes,
worth it for benchmark runs on hardware where compiling is slow; the price is a slightly different
result: the extra reflected rows and columns change the pixels near the bottom/right edges and,
through the unfolding unit's per-image RMS scaling, every pixel by a little.

Compiled forward functions are cached per model architecture (and, by ``jax.jit``, per input
shape): parameters are arguments, never constants, so reloading a checkpoint does not recompile.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Callable, Sequence

import numpy as np

from fusionjax import color
from fusionjax import stages
from fusionjax.models import stats as solver_stats
from fusionjax.tiling import DEFAULT_TILE_OVERLAP as DEFAULT_TILE_OVERLAP
from fusionjax.tiling import DEFAULT_TILE_SIZE as DEFAULT_TILE_SIZE
from fusionjax.tiling import tiled_apply


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
      bar = state["bar"] = tqdm(
        total=total,
        unit=label[:-1] if label.endswith("s") else label,
        desc=label,
        file=stream,
        leave=False,
      )
      bar.n = 0
    bar.update(done - bar.n)
    if done >= total:
      bar.close()
      state.pop("bar")

  return update


class _CompiledModel:
  """The jitted forward functions of one architecture (parameters are inputs, not constants)."""

  def __init__(self, model, colornet):
    import jax  # Deferred: checking paths and sources needs no JAX.

    def network(variables, y1, y2):
      fused, aux = model.apply(variables, y1, y2, mutable=["intermediates"])
      return fused, solver_stats.find_solver_stats(aux.get("intermediates", {}))

    self.network = jax.jit(network)
    self.colornet = None
    if colornet is not None:
      self.colornet = jax.jit(lambda variables, c1, c2, y: colornet.apply(variables, c1, c2, y))
    self.seen_shapes: set = set()


_COMPILED: dict = {}
_COMPILED_LOCK = threading.Lock()


#: How more than two sources are fused (see the module docstring).
SEQUENCE_RULES = ("chain", "adjacent")


def default_sequence_rule(task: str) -> str:
  """The rule :func:`fuse_images` uses for more than two sources of a task's stage."""
  return "adjacent" if task == "meif" else "chain"


def _unknown_rule(rule) -> str:
  return f"sequence rule must be one of {', '.join(SEQUENCE_RULES)}, got {rule!r}."


def check_sequence_rule(rule: str | None, task: str) -> str:
  """``rule``, or the task's default for ``None``; ValueError for an unknown rule."""
  if rule is None:
    return default_sequence_rule(task)
  if rule not in SEQUENCE_RULES:
    raise ValueError(_unknown_rule(rule))
  return rule


def combine_sequence(fuse_pair: Callable, sources: Sequence, rule: str) -> tuple[np.ndarray, list]:
  """Fuses two or more sources with a pairwise fusion by a rule of :data:`SEQUENCE_RULES`.

  Args:
    fuse_pair: ``fuse_pair(first, second, k) -> fused`` for the k-th network call.
    sources: the arrays, in order.
    rule: ``"chain"`` or ``"adjacent"`` (see the module docstring).

  Returns:
    ``(fused, results)``: the fused array and the result of every pairwise call, in call order.
  """
  if rule not in SEQUENCE_RULES:
    raise ValueError(_unknown_rule(rule))
  if rule == "chain":
    steps, fused = [], sources[0]
    for k, nxt in enumerate(sources[1:]):
      fused = fuse_pair(fused, nxt, k)
      steps.append(fused)
    return fused, steps
  steps = [fuse_pair(a, b, k) for k, (a, b) in enumerate(zip(sources[:-1], sources[1:]))]
  fused = np.array(steps[0], np.float32)
  for step in steps[1:]:
    fused += step
  if len(steps) > 1:
    fused /= len(steps)
  return fused, steps


#: Reflected pixels added on every side of the sources before the network (see the module docstring).
BORDER = 8


def fusion_network(fusion_model):
  """The network as inference applies it: the stage's network with :data:`BORDER`."""
  model = fusion_model.model
  return model.clone(border=BORDER) if hasattr(model, "border") else model


def _compiled(fusion_model) -> _CompiledModel:
  """Returns the cached jitted functions for the model's architecture."""
  network = fusion_network(fusion_model)
  key = (
    type(network).__name__,
    repr(network),
    repr(fusion_model.colornet) if fusion_model.colornet is not None else None,
  )
  with _COMPILED_LOCK:
    if key not in _COMPILED:
      _COMPILED[key] = _CompiledModel(network, fusion_model.colornet)
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
    steps: the fused luma of every pairwise network call, in call order (one for two sources; see
      :func:`combine_sequence`).
  """

  luma: np.ndarray
  solver_stats: dict | None
  compiled: bool
  tiles: int
  steps: list = dataclasses.field(default_factory=list)


def _check_luma(y: np.ndarray, name: str) -> np.ndarray:
  y = np.asarray(y, np.float32)
  if y.ndim == 2:
    y = y[..., None]
  if y.ndim != 3 or y.shape[-1] != 1:
    raise ValueError(f"{name} must be a luma image (H, W) or (H, W, 1), got shape {y.shape}.")
  return y


def fuse_luma(
  fusion_model,
  lumas: Sequence[np.ndarray],
  *,
  tile_size: int = DEFAULT_TILE_SIZE,
  tile_overlap: int = DEFAULT_TILE_OVERLAP,
  pad_multiple: int | None = None,
  tile_batch: int = 1,
  progress: Callable[[int, int], None] | None = None,
  sequence: str | None = None,
) -> LumaFusion:
  """Fuses two or more luma images with the network.

  Args:
    fusion_model: a :class:`fusionjax.stages.FusionModel`.
    lumas: arrays (H, W) or (H, W, 1) in [0, 1] of one size, ordered as the task expects
      (near/far, under/over, visible/infrared, MRI/other; docs/DESIGN.md §2).
    tile_size: images larger than this on either side are fused in tiles.
    tile_overlap: overlap of neighbouring tiles.
    pad_multiple: pad inputs to a multiple of this (and of the network's own multiple) to share
      compiled shapes; ``None`` pads exactly as the network does (see the module docstring).
    tile_batch: tiles fused per network call (memory grows with it; the solver stops each image
      on its own, so batching does not change the result).
    progress: ``progress(tiles_done, tiles_total)`` per network call (see :func:`terminal_progress`).
    sequence: how more than two sources are fused, one of :data:`SEQUENCE_RULES`; ``None`` takes
      :func:`default_sequence_rule` of the model's task.

  Returns:
    A :class:`LumaFusion`.
  """
  lumas = [_check_luma(y, f"source {k + 1}") for k, y in enumerate(lumas)]
  check_sources(lumas)
  return _fuse_luma(
    fusion_model,
    lumas,
    tile_size=tile_size,
    tile_overlap=tile_overlap,
    pad_multiple=pad_multiple,
    tile_batch=tile_batch,
    progress=progress,
    sequence=check_sequence_rule(sequence, fusion_model.task),
  )


def _fuse_luma(
  fusion_model,
  lumas: Sequence[np.ndarray],
  *,
  tile_size: int,
  tile_overlap: int,
  pad_multiple: int | None,
  tile_batch: int,
  progress,
  sequence: str,
) -> LumaFusion:
  """:func:`fuse_luma` on checked (H, W, 1) lumas and a checked sequence rule."""
  compiled = _compiled(fusion_model)
  variables = stages.as_variables(fusion_model.params)
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
    stats_seen.append(solver_stats.solver_stats_summary(stats))
    return np.asarray(fused)

  def fuse_pair(first: np.ndarray, second: np.ndarray, _) -> np.ndarray:
    nonlocal tile_count
    tile_count = 0
    fused = tiled_apply(
      run,
      [first, second],
      tile_size=tile_size,
      overlap=tile_overlap,
      align=align,
      batch=tile_batch,
      progress=progress,
    )
    return np.clip(fused, 0.0, 1.0)

  fused, steps = combine_sequence(fuse_pair, lumas, sequence)
  merged = None
  for stats in stats_seen:
    merged = solver_stats.merge_solver_summaries(merged, stats)
  return LumaFusion(
    luma=fused, solver_stats=merged, compiled=new_shape, tiles=tile_count, steps=steps
  )


def _check_same_size(images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> None:
  sizes = [tuple(np.shape(a)[:2]) for a in images]
  if len(set(sizes)) > 1:
    labels = names or [f"image {k + 1}" for k in range(len(images))]
    listing = ", ".join(f"{label}: {h}x{w} (HxW)" for label, (h, w) in zip(labels, sizes))
    raise ValueError(
      f"All sources must have the same size, got {listing}. Register and resize the "
      "sources to a common size first."
    )


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
      raise ValueError(
        f"{label} must hold finite values in [0, 1] (got range "
        f"[{np.nanmin(array):.3g}, {np.nanmax(array):.3g}]); scale 8-bit images by 1/255."
      )
  _check_same_size(images, labels)


def fuse_chroma_sources(
  fusion_model,
  chromas: Sequence[np.ndarray | None],
  step_lumas: Sequence[np.ndarray],
  *,
  use_colornet: bool = True,
  tile_size: int = DEFAULT_TILE_SIZE,
  tile_overlap: int = DEFAULT_TILE_OVERLAP,
  pad_multiple: int | None = None,
  sequence: str = "chain",
) -> np.ndarray | None:
  """The fused chroma of the sources by the rules in the module docstring.

  Args:
    fusion_model: the model (its ColorNet, if any, is used when allowed).
    chromas: per source (H, W, 2) chroma, or ``None`` for grey sources.
    step_lumas: the fused luma of each pairwise network call (``len(chromas) - 1`` arrays,
      :attr:`LumaFusion.steps`); ColorNet's k-th call sees the k-th.
    use_colornet: use the checkpoint's ColorNet when it has one and all sources are colour.
    tile_size: tile side for ColorNet on large images.
    tile_overlap: tile overlap for ColorNet.
    pad_multiple: pad ColorNet's inputs to a multiple of this; ``None`` runs it at the image's own
      size (it is convolutional and needs no padding).
    sequence: the rule of :data:`SEQUENCE_RULES` the luma was fused by (ColorNet follows it).

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
    variables = stages.as_variables(fusion_model.colornet_params)
    align = int(pad_multiple or 1)

    def run(c1, c2, y):
      compiled.seen_shapes.add(("colornet",) + c1.shape[1:])
      return np.asarray(compiled.colornet(variables, c1, c2, y))

    def fuse_pair(c1: np.ndarray, c2: np.ndarray, k: int) -> np.ndarray:
      fused = tiled_apply(
        run,
        [c1, c2, step_lumas[k]],
        tile_size=tile_size,
        overlap=tile_overlap,
        align=align,
        batch=1,
      )
      return np.clip(fused, 0.0, 1.0)

    return combine_sequence(fuse_pair, chromas, sequence)[0]
  return color.fuse_chroma_images(coloured)


def fuse_images(
  fusion_model,
  images: Sequence[np.ndarray],
  *,
  tile_size: int = DEFAULT_TILE_SIZE,
  tile_overlap: int = DEFAULT_TILE_OVERLAP,
  grey: bool = False,
  use_colornet: bool = True,
  pad_multiple: int | None = None,
  tile_batch: int = 1,
  progress: Callable[[int, int], None] | None = None,
  with_info: bool = False,
  sequence: str | None = None,
):
  """Fuses two or more registered images of one size with a fusion network.

  Args:
    fusion_model: a :class:`fusionjax.stages.FusionModel` (from ``load_model`` or built from
      ``create_model`` + ``init``).
    images: float arrays (H, W, 1) or (H, W, 3) in [0, 1], all of the same H x W, in the order
      the task expects (near/far, under/over, visible/infrared, MRI/other; docs/DESIGN.md §2).
      More than two are fused by the ``sequence`` rule (see the module docstring).
    tile_size: images larger than this on either side are fused in overlapping tiles.
    tile_overlap: overlap of neighbouring tiles.
    grey: return the fused luma only, even for colour sources.
    use_colornet: use the checkpoint's ColorNet (if any) for the chroma of colour sources.
    pad_multiple: coarser input padding to share compiled shapes (``None``: exact, see the module
      docstring).
    tile_batch: tiles per network call on large images (see :func:`fuse_luma`).
    progress: ``progress(tiles_done, tiles_total)`` callback (see :func:`terminal_progress`).
    with_info: also return the :class:`LumaFusion` (solver statistics, whether it compiled).
    sequence: how more than two sources are fused, one of :data:`SEQUENCE_RULES`; ``None`` takes
      :func:`default_sequence_rule` of the model's task.

  Returns:
    The fused image: float32 (H, W, 3) RGB when any source is colour (and ``grey`` is false), else
    (H, W, 1); with ``with_info``, ``(fused image, LumaFusion)``.
  """
  check_sources(images)
  fused, info = _fuse_images(
    fusion_model,
    images,
    tile_size=tile_size,
    tile_overlap=tile_overlap,
    grey=grey,
    use_colornet=use_colornet,
    pad_multiple=pad_multiple,
    tile_batch=tile_batch,
    progress=progress,
    sequence=check_sequence_rule(sequence, fusion_model.task),
  )
  return (fused, info) if with_info else fused


def _fuse_images(
  fusion_model,
  images: Sequence[np.ndarray],
  *,
  tile_size: int,
  tile_overlap: int,
  grey: bool,
  use_colornet: bool,
  pad_multiple: int | None,
  tile_batch: int,
  progress,
  sequence: str,
) -> tuple[np.ndarray, LumaFusion]:
  """:func:`fuse_images` on checked sources; returns ``(fused image, LumaFusion)``."""
  shapes_before = len(_compiled(fusion_model).seen_shapes)
  split = [color.split_luma_chroma(image) for image in images]
  lumas = [y for y, _ in split]
  chromas = [c for _, c in split]
  options = dict(
    tile_size=tile_size,
    tile_overlap=tile_overlap,
    pad_multiple=pad_multiple,
    tile_batch=tile_batch,
    progress=progress,
  )
  info = _fuse_luma(fusion_model, lumas, sequence=sequence, **options)
  if grey:
    return info.luma, info
  chroma = fuse_chroma_sources(
    fusion_model,
    chromas,
    info.steps,
    use_colornet=use_colornet,
    tile_size=tile_size,
    tile_overlap=tile_overlap,
    pad_multiple=pad_multiple,
    sequence=sequence,
  )
  # A ColorNet call on a new shape compiles too.
  info.compiled = info.compiled or len(_compiled(fusion_model).seen_shapes) > shapes_before
  if chroma is None:
    return info.luma, info
  return color.merge_luma_chroma(info.luma, chroma), info
