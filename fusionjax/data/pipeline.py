"""Training batches for the three supervised and unsupervised stages (MFIF, MEIF, IVF).

Usage::

  config = default_data_config("mfif")
  config.data_dir = "/path/to/data"          # a root laid out as in docs/DESIGN.md §5
  source = make_training_source("mfif", config)
  batch = source.batch(step)                 # pure function of (seed, step)
  for batch in source.iterate(start_step=step, prefetch=2):
    ...

Every example of a batch is drawn from its own random generator seeded by (seed, step, index in the
global batch), so a batch is a pure function of (seed, step): resuming at step s gives the batches of an
uninterrupted run, whatever the prefetch depth or number of worker threads. Sets are sampled with
replacement (each example picks a set by the configured fractions, then an item uniformly), which keeps
that property without epoch bookkeeping; over a run of thousands of steps every item is seen many times.

Batch keys, float32, B = the batch size of this process, P = patch size, sources in docs/DESIGN.md §2 order:

- ``y1``, ``y2`` (B, P, P, 1): luma (BT.601 Y) of the sources in [0, 1]: MFIF (near, far),
  MEIF (under, over), IVF (visible, infrared).
- ``reference`` (B, P, P, 1): luma of the reference (MFIF and MEIF).
- ``crcb1``, ``crcb2``, ``reference_crcb`` (B, P, P, 2): chroma (Cr, Cb) of the sources and of the
  reference (MEIF only, for ColorNet); a grey image has neutral chroma 0.5.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from fusionjax.color import CHROMA_NEUTRAL, rgb_to_ycrcb
from fusionjax.data import synthetic
from fusionjax.data.config import resolve_data_config
from fusionjax.data.prefetch import BatchIterator
from fusionjax.data.pairs import Pair
from fusionjax.data.readers import list_images, list_pairs
from fusionjax.imageio import load_image, to_uint8


# ---------------------------------------------------------------------------------------------------
# Examples


@dataclasses.dataclass(frozen=True)
class _Set:
  """A weighted set of items and how one example is made from an item."""

  name: str
  fraction: float
  items: tuple[Any, ...]
  make: Callable[[np.random.Generator, list[np.ndarray]], dict[str, np.ndarray]]

  def paths(self, item) -> tuple[Path, ...]:
    return item.files if isinstance(item, Pair) else (item,)


def _luma_chroma(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(H, W, 1) luma and (H, W, 2) chroma of an RGB or grey float image; grey has neutral chroma."""
  if image.shape[-1] == 1:
    return image, np.full(image.shape[:2] + (2,), CHROMA_NEUTRAL, np.float32)
  ycrcb = np.clip(rgb_to_ycrcb(image), 0.0, 1.0).astype(np.float32)
  return ycrcb[..., :1], ycrcb[..., 1:]


def _luma(image: np.ndarray) -> np.ndarray:
  return _luma_chroma(image)[0]


def _crop_all(
  rng: np.random.Generator,
  images: list[np.ndarray],
  patch: int,
  augment: bool,
  names: Sequence[Path],
) -> list[np.ndarray]:
  """One random P×P window (and one flip/rotation) applied to every image of an item.

  Images smaller than the patch are reflect-padded, not resized: resizing would change the scale of
  defocus blur, noise and texture that the network learns from.
  """
  height, width = images[0].shape[:2]
  for image, name in zip(images, names):
    if image.shape[:2] != (height, width):
      listed = ", ".join(f"{n} is {i.shape[0]}x{i.shape[1]}" for n, i in zip(names, images))
      raise ValueError(
        f"Images of one training item differ in size (HxW): {listed}. They must align."
      )
  pad_h, pad_w = max(0, patch - height), max(0, patch - width)
  if pad_h or pad_w:
    pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    images = [np.pad(image, pads, mode="reflect") for image in images]
    height, width = images[0].shape[:2]
  top = int(rng.integers(0, height - patch + 1))
  left = int(rng.integers(0, width - patch + 1))
  crops = [image[top : top + patch, left : left + patch] for image in images]
  if augment:
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    crops = [np.rot90(c, k=turns, axes=(0, 1)) for c in crops]
    if flip:
      crops = [c[:, ::-1] for c in crops]
  return [np.ascontiguousarray(c, dtype=np.float32) / np.float32(255.0) for c in crops]


def _supervised_example(
  sources: list[np.ndarray], reference: np.ndarray, with_chroma: bool
) -> dict:
  (y1, c1), (y2, c2), (yr, cr) = (_luma_chroma(x) for x in (sources[0], sources[1], reference))
  example = {"y1": y1, "y2": y2, "reference": yr}
  if with_chroma:
    example.update(crcb1=c1, crcb2=c2, reference_crcb=cr)
  return example


class TrainingSource:
  """Deterministic training batches of one task (built by :func:`make_training_source`).

  Attributes:
    task: 'mfif', 'meif' or 'ivf'.
    config: the resolved data config (plain dict).
    batch_size: examples per batch of this process.
    global_batch_size: examples per step over all processes.
    patch_size: crop side.
  """

  def __init__(
    self, task: str, config: dict, sets: list[_Set], process_index: int = 0, process_count: int = 1
  ):
    self.task = task
    self.config = config
    self._sets = [s for s in sets if s.fraction > 0]
    self._cumulative = np.cumsum([s.fraction for s in self._sets])
    self.global_batch_size = int(config["batch_size"])
    self.batch_size = self.global_batch_size // process_count
    self.patch_size = int(config["patch_size"])
    self._first_index = process_index * self.batch_size
    self._cache: dict[Path, np.ndarray] = {}
    self._cache_lock = threading.Lock()
    self._pool = None
    if int(config["num_workers"]) > 1:
      self._pool = concurrent.futures.ThreadPoolExecutor(
        int(config["num_workers"]), thread_name_prefix="fusionjax-data"
      )

  def describe(self) -> str:
    """One line per set: name, number of items, share of the examples."""
    total = float(self._cumulative[-1])
    return "\n".join(
      f"{self.task}: {s.name}: {len(s.items)} items, {100 * s.fraction / total:.0f}% of examples"
      for s in self._sets
    )

  def _image(self, path: Path) -> np.ndarray:
    cached = self._cache.get(path)
    if cached is not None:
      return cached
    # uint8 is exact for the 8-bit sources and a quarter of float32's memory.
    image = to_uint8(load_image(path))
    if self.config["cache"]:
      with self._cache_lock:
        self._cache.setdefault(path, image)
    return image

  def example(self, step: int, index: int) -> dict[str, np.ndarray]:
    """Example ``index`` (position in the global batch) of ``step``: a pure function of (seed, step, index).

    Args:
      step: training step, >= 0.
      index: position in the global batch, in [0, global_batch_size).

    Returns:
      Dict of float32 arrays (P, P, C), the per-example version of :meth:`batch`'s keys.
    """
    rng = np.random.default_rng(
      np.random.SeedSequence([int(self.config["seed"]), int(step), int(index)])
    )
    draw = rng.random() * self._cumulative[-1]
    chosen = self._sets[
      min(int(np.searchsorted(self._cumulative, draw, side="right")), len(self._sets) - 1)
    ]
    item = chosen.items[int(rng.integers(len(chosen.items)))]
    paths = chosen.paths(item)
    crops = _crop_all(
      rng, [self._image(p) for p in paths], self.patch_size, bool(self.config["augment"]), paths
    )
    return chosen.make(rng, crops)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """The batch of ``step`` for this process: a pure function of (seed, step).

    Args:
      step: training step, >= 0.

    Returns:
      Dict of float32 arrays with leading axis ``batch_size`` (see the module docstring for keys).
    """
    return self.examples(step, range(self._first_index, self._first_index + self.batch_size))

  def examples(self, step: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Examples ``indices`` (positions in the global batch) of ``step``, stacked like :meth:`batch`.

    Any process can make any examples of the global batch: the training loop makes its sample
    crops (the first examples of step 0) this way, the same in every process and process count.
    """
    if not isinstance(step, (int, np.integer)) or step < 0:
      raise ValueError(f"step must be a non-negative integer, got {step!r}.")
    if self._pool is not None:
      examples = list(self._pool.map(lambda i: self.example(step, i), indices))
    else:
      examples = [self.example(step, i) for i in indices]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}

  def iterate(
    self, start_step: int = 0, prefetch: int = 2, num_steps: int | None = None
  ) -> "BatchIterator":
    """Batches of steps start_step, start_step + 1, ..., computed ahead in a background thread.

    Args:
      start_step: the first step (resume from a checkpoint's step).
      prefetch: batches computed ahead; 0 computes each batch on demand in the caller's thread.
      num_steps: stop after this many batches; None runs forever.

    Returns:
      A :class:`BatchIterator` (also a context manager that stops the thread).
    """
    if prefetch < 0:
      raise ValueError(f"prefetch must be >= 0, got {prefetch}.")
    if not isinstance(start_step, (int, np.integer)) or start_step < 0:
      raise ValueError(f"start_step must be a non-negative integer, got {start_step!r}.")
    return BatchIterator(self.batch, int(start_step), prefetch, num_steps)

  def close(self) -> None:
    """Stops the worker threads (if any) and frees the image cache."""
    if self._pool is not None:
      self._pool.shutdown(wait=True)
      self._pool = None
    self._cache.clear()


# ---------------------------------------------------------------------------------------------------
# Per-task sources


def holdout_split(items: Sequence, every: int, held_back: bool) -> list:
  """One side of the validation split of a set (``config.data.holdout_every``).

  Positions every-1, 2*every-1, ... are held back, so a set of fewer than ``every`` items trains on
  all of them and holds none back; ``every`` = 0 holds nothing back.

  Args:
    items: the set's items in their reader's order.
    every: the ``holdout_every`` setting.
    held_back: True for the held-back items, False for the rest.
  """
  if every <= 0:
    return [] if held_back else list(items)
  return [item for i, item in enumerate(items) if ((i + 1) % every == 0) == held_back]


def _select(items: list, config: dict) -> tuple:
  """The items of one set this source uses: the held-back split or the rest, then the cap."""
  items = holdout_split(items, config["holdout_every"], config["holdout"])
  max_images = config["max_images"]
  return tuple(items if max_images is None else items[:max_images])


def _photographs(config: dict) -> tuple[str, tuple]:
  """The description and selected paths of the photographs behind a synthetic set."""
  names = config["image_sets"]
  images = [path for name in names for path in list_images(config["data_dir"], name)]
  return " + ".join(names), _select(images, config)


def _multi_focus_set(config: dict, fraction: float) -> _Set:
  options = config["multi_focus"]
  kwargs = dict(
    sigma_range=tuple(options["sigma_range"]),
    mask_fraction_range=tuple(options["mask_fraction_range"]),
    mask_cells_range=tuple(options["mask_cells_range"]),
    gamma=float(options["gamma"]),
  )

  def make(rng, crops):
    near, far, reference, _ = synthetic.multi_focus_pair(crops[0], rng, **kwargs)
    return {"y1": _luma(near), "y2": _luma(far), "reference": _luma(reference)}

  names, images = _photographs(config)
  return _Set(f"synthetic multi-focus ({names})", fraction, images, make)


def _multi_exposure_set(config: dict, fraction: float) -> _Set:
  kwargs = {key: tuple(value) for key, value in config["multi_exposure"].items()}

  black_out_fraction = config["black_out_fraction"]
  one_source = config["black_out_one_source"]

  def make(rng, crops):
    image = crops[0]
    black_source = None  # which exposure alone is blacked out, if any
    if black_out_fraction > 0 and rng.random() < black_out_fraction:
      if one_source > 0 and rng.random() < one_source:
        black_source = int(rng.integers(2))
      else:
        image = synthetic.black_out(image, rng)
    under, over, reference = synthetic.multi_exposure_pair(image, rng, **kwargs)
    sources = [under, over]
    if black_source is not None:
      sources[black_source] = synthetic.black_out(sources[black_source], rng)
    return _supervised_example(sources, reference, with_chroma=True)

  names, images = _photographs(config)
  return _Set(f"synthetic multi-exposure ({names})", fraction, images, make)


def _pair_set(
  name: str,
  pairs: list[Pair],
  config: dict,
  fraction: float,
  with_reference: bool,
  with_chroma: bool,
) -> _Set:
  def make(rng, crops):
    del rng
    if with_reference:
      return _supervised_example(crops[:2], crops[2], with_chroma)
    return {"y1": _luma(crops[0]), "y2": _luma(crops[1])}

  return _Set(name, fraction, _select(pairs, config), make)


def make_training_source(
  task: str,
  data_config: Mapping | ml_collections.ConfigDict | None,
  *,
  process_index: int = 0,
  process_count: int = 1,
) -> TrainingSource:
  """Builds the training batches of a stage from the sets under ``data_config.data_dir``.

  - MFIF: pairs synthesised from ``clean_natural`` (:func:`synthetic.multi_focus_pair`), plus Real-MFF
    triples (share ``real_mff_fraction``) when ``real_mff_dir`` is set.
  - MEIF: SICE training pairs with references, mixed with pairs synthesised from ``clean_natural``
    (share ``synthetic_fraction``).
  - IVF: RoadScene's training split (never its 50 test pairs, never TNO).

  Every listing is validated file by file before the first batch.

  Args:
    task: 'mfif', 'meif' or 'ivf'.
    data_config: fields of :func:`default_data_config` to set (ConfigDict or dict); ``data_dir`` is required.
    process_index: this process's index (``jax.process_index()``) when several hosts share the batch.
    process_count: number of processes; the global batch is split evenly between them.

  Returns:
    A :class:`TrainingSource`.

  Raises:
    ValueError: bad config fields, or batch_size not divisible by process_count.
    FileNotFoundError: a required set is missing under data_dir.
  """
  config = resolve_data_config(task, data_config)
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"Need 0 <= process_index < process_count, got {process_index} and {process_count}."
    )
  if config["batch_size"] % process_count:
    raise ValueError(
      f"config.data.batch_size={config['batch_size']} is not divisible by the "
      f"{process_count} processes; choose a multiple of {process_count}."
    )
  sets: list[_Set] = []
  if task == "mfif":
    real_fraction = config["real_mff_fraction"] if config["real_mff_dir"] else 0.0
    if real_fraction > 0:
      pairs = list_pairs("real_mff", config["real_mff_dir"], "train")
      sets.append(
        _pair_set("Real-MFF", pairs, config, real_fraction, with_reference=True, with_chroma=False)
      )
    if real_fraction < 1:
      sets.append(_multi_focus_set(config, 1.0 - real_fraction))
  elif task == "meif":
    synthetic_fraction = config["synthetic_fraction"]
    if synthetic_fraction < 1:
      pairs = list_pairs("sice", config["data_dir"], config["sice_split"])
      sets.append(
        _pair_set(
          f"SICE {config['sice_split']}",
          pairs,
          config,
          1.0 - synthetic_fraction,
          with_reference=True,
          with_chroma=True,
        )
      )
    if synthetic_fraction > 0:
      sets.append(_multi_exposure_set(config, synthetic_fraction))
  else:
    if config["roadscene_split"] not in ("train",):
      raise ValueError(
        f"config.data.roadscene_split must be 'train' (the 50 test pairs are for evaluation), "
        f"got {config['roadscene_split']!r}."
      )
    pairs = list_pairs("roadscene", config["data_dir"], config["roadscene_split"])
    sets.append(
      _pair_set("RoadScene train", pairs, config, 1.0, with_reference=False, with_chroma=False)
    )
  return TrainingSource(task, config, sets, process_index, process_count)
