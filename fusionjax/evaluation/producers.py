"""Where an evaluation's fused images come from: one small object per kind.

- :class:`CheckpointProducer`: a stage checkpoint fuses the pair (tiled above ``tile_size``);
- :class:`BaselineProducer`: a pixel-wise rule of :mod:`fusionjax.evaluation.baselines`;
- :class:`FusedDirProducer`: a file of another method, matched to the pair by name or by
  ``fused_pattern`` (:mod:`fusionjax.evaluation.matching`).

Each is built from the run's :class:`~fusionjax.evaluation.options.EvalOptions` and the pairs to
score, and :func:`fusionjax.evaluation.runner.evaluate` drives it:

- ``inputs``: the files and folders it reads, which the output folder must not hold;
- :meth:`~Producer.load`: the work done once the output folder has been checked (a checkpoint is
  loaded here);
- :meth:`~Producer.header`: the summary fields that describe the run (method, options, model,
  checkpoint);
- ``producer(pair, sources)``: the pair's fused image and its extra ``metrics.csv`` columns; a
  :class:`~fusionjax.evaluation.pairs.PairError` leaves the pair unscored, with the reason;
- :meth:`~Producer.finish`: completes the summary once every pair is scored (latency, FLOPs, solver).
"""

from __future__ import annotations

import abc
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages
from fusionjax.evaluation import cost
from fusionjax import tasks
from fusionjax.evaluation import baselines
from fusionjax.evaluation import matching
from fusionjax.evaluation import pairs as pairs_lib
from fusionjax.evaluation.options import EvalOptions

logger = logging.getLogger(__name__)


def _device_name() -> str:
  import jax

  device = jax.devices()[0]
  kind = getattr(device, "device_kind", "") or ""
  return device.platform if kind.lower() in ("", device.platform) else f"{device.platform} ({kind})"


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
  start = time.perf_counter()
  value = fn()
  return value, time.perf_counter() - start


class Producer(abc.ABC):
  """Makes the fused image of every pair of one evaluation (see the module docstring).

  Args:
    options: the run's options.
    pairs: the pairs to score, in order.
    task: the task of the pairs (None for 'folders' pairs without one).
    split: the resolved dataset split.
    metrics: the checked metric names.
  """

  #: Whether the fused images are written to ``out/fused/<pair>.png``.
  save_fused = True

  def __init__(
    self,
    options: EvalOptions,
    pairs: Sequence,
    *,
    task: str | None,
    split: str | None,
    metrics: Sequence[str],
  ):
    del pairs  # Only the producers that match files to pairs need them.
    self.options = options
    self.task = task
    self.split = split
    self.metrics = list(metrics)
    #: Files and folders the producer reads; ``out`` must not hold them.
    self.inputs: tuple = ()

  def load(self) -> None:
    """The work before the first pair, once the output folder has been checked."""

  @abc.abstractmethod
  def header(self) -> dict:
    """The summary fields that describe the run."""

  @abc.abstractmethod
  def __call__(self, pair, sources: Sequence[np.ndarray]) -> tuple[np.ndarray, dict]:
    """The fused image of ``pair`` from its (possibly downscaled) ``sources``, and extra CSV columns."""

  def finish(self, summary: dict, rows: Sequence[Mapping]) -> None:
    """Completes ``summary`` from the rows of the scored pairs before it is written."""

  def _header(self, method: str, options: Mapping) -> dict:
    from fusionjax import __version__

    return {
      "method": method,
      "dataset": self.options.dataset,
      "split": self.split,
      "task": self.task,
      "options": dict(options),
      "fusionjax_version": __version__,
    }


class CheckpointProducer(Producer):
  """Fuses each pair with a stage checkpoint and times it.

  The model section of the summary holds the parameter count, the FLOPs of the forward pass at the
  first image's size (XLA's cost analysis with every loop iteration counted, the solver's at its
  mean iteration count on this set; see :func:`fusionjax.evaluation.cost.forward_cost`) and the mean wall
  time per image (calls that compiled a new input shape excluded).
  """

  def __init__(self, options: EvalOptions, pairs: Sequence, **kwargs):
    super().__init__(options, pairs, **kwargs)
    ckpt = options.ckpt
    self.inputs = (
      ckpt if isinstance(ckpt, (str, os.PathLike)) and not stages.is_shipped(ckpt) else None,
    )
    self.fusion_model = None
    self.latencies: list[float] = []  # Seconds per call that did not compile a new shape.
    self._first_size: tuple[int, int] | None = (
      None  # (H, W) of the first pair, as fused (after max_side).
    )
    self._last_sources: Sequence[np.ndarray] | None = None

  def load(self) -> None:
    ckpt = self.options.ckpt
    self.fusion_model = stages.load_model(ckpt, task=self.task if stages.is_shipped(ckpt) else None)
    expected = tasks.STAGE_OF_TASK.get(self.task.lower()) if self.task is not None else None
    if expected is not None and self.fusion_model.task != expected:
      logger.warning(
        "Evaluating a %s checkpoint on %s pairs (%s); the matching stage is %s.",
        self.fusion_model.task,
        self.task,
        self.options.dataset,
        expected,
      )

  def _fuse(self, sources):
    options = self.options
    return _timed(
      lambda: inference.fuse_images(
        self.fusion_model,
        sources,
        tile_size=options.tile_size,
        tile_overlap=options.tile_overlap,
        pad_multiple=options.pad_multiple,
        with_info=True,
        sequence=options.sequence,
      )
    )

  def __call__(self, pair, sources):
    del pair
    (fused, info), seconds = self._fuse(sources)
    if not info.compiled:
      self.latencies.append(seconds)
    self._last_sources = sources
    if self._first_size is None:
      self._first_size = tuple(sources[0].shape[:2])
    columns = {"latency_s": seconds, "compiled": info.compiled, "tiles": info.tiles}
    if info.solver_stats:
      columns.update({f"solver_{k}": v for k, v in info.solver_stats.items()})
    return fused, columns

  def header(self) -> dict:
    from fusionjax import checkpoints

    options, fusion_model = self.options, self.fusion_model
    description = cost.describe(fusion_model)
    model_info = {
      "network": description["network"],
      "params": description["params"],
      "network_params": description["network_params"],
      "colornet_params": description["colornet_params"],
      "config": description["model_config"],
      "device": _device_name(),
    }
    header = self._header(
      options.name or f"{description['network']} ({fusion_model.task})",
      {
        "max_pairs": options.max_pairs,
        "max_side": options.max_side,
        "tile_size": options.tile_size,
        "tile_overlap": options.tile_overlap,
        "pad_multiple": options.pad_multiple,
        "sequence": inference.check_sequence_rule(options.sequence, fusion_model.task),
      },
    )
    metadata = fusion_model.metadata or {}
    header["checkpoint"] = {
      "path": fusion_model.path,
      "step": fusion_model.step,
      "task": fusion_model.task,
      "lineage": checkpoints.stage_lineage(metadata) if metadata else [],
    }
    header["model"] = model_info
    return header

  def finish(self, summary, rows):
    model_info = summary["model"]
    if not self.latencies and self._last_sources is not None:
      # Every image compiled a new shape: time one more call on the last image, now compiled.
      _, seconds = self._fuse(self._last_sources)
      self.latencies.append(seconds)
    model_info["latency_s"] = float(np.mean(self.latencies)) if self.latencies else None
    model_info["latency_n"] = len(self.latencies)
    solved = [r for r in rows if r.get("solver_num_steps") is not None]
    if solved:
      summary["solver"] = {
        "n": len(solved),
        "mean_steps": float(np.mean([r["solver_num_steps"] for r in solved])),
        "max_rel_residual": max(r.get("solver_rel_residual", math.nan) for r in solved),
        "converged": int(sum(bool(r.get("solver_converged")) for r in solved)),
      }
    if self.options.measure_flops:
      # The solver's loop is counted for as many iterations as it took on average here.
      trips = summary["solver"]["mean_steps"] if solved else None
      counted = cost.forward_cost(
        self.fusion_model,
        *self._first_size,
        pad_multiple=self.options.pad_multiple,
        while_trips=trips,
      )
      model_info.update(
        {
          "flops": counted["flops"],
          "flops_xla": counted["flops_xla"],
          "flops_input_size": counted["input_size"],
          "flops_while_loops": counted["while_loops"],
          "flops_while_trips": trips,
          "colornet_flops": counted.get("colornet_flops"),
        }
      )


class BaselineProducer(Producer):
  """Fuses each pair with a built-in pixel-wise rule; the model section holds 0 parameters and its mean time."""

  def __init__(self, options: EvalOptions, pairs: Sequence, **kwargs):
    super().__init__(options, pairs, **kwargs)
    self.rule = baselines.BASELINES[options.method]
    self.latencies: list[float] = []

  def __call__(self, pair, sources):
    del pair
    fused, seconds = _timed(lambda: self.rule(sources))
    self.latencies.append(seconds)
    return fused, {"latency_s": seconds}

  def header(self) -> dict:
    options = self.options
    header = self._header(
      options.name or options.method, {"max_pairs": options.max_pairs, "max_side": options.max_side}
    )
    header["model"] = {"network": options.method, "params": 0, "flops": None, "device": "numpy"}
    header["checkpoint"] = None
    return header

  def finish(self, summary, rows):
    del rows
    summary["model"].update(
      {"latency_s": float(np.mean(self.latencies)), "latency_n": len(self.latencies)}
    )


class FusedDirProducer(Producer):
  """Reads each pair's fused image from ``fused_dir`` (another method's results); writes no images.

  The file must have the sources' size (or, with ``max_side``, either that size or the downscaled
  one). A fused file that cannot be read or has another size leaves its pair unscored (listed with
  the reason); a pair without a file is refused, or skipped and listed under ``allow_missing``.
  """

  save_fused = False

  def __init__(self, options: EvalOptions, pairs: Sequence, **kwargs):
    super().__init__(options, pairs, **kwargs)
    matched, self.missing = matching.match_fused_files(
      pairs,
      options.fused_dir,
      allow_missing=options.allow_missing,
      pattern=options.fused_pattern,
      method=options.pattern_method,
    )
    self._files = {id(pair): path for pair, path in matched}
    self.inputs = (options.fused_dir,)

  def __call__(self, pair, sources):
    path = self._files.get(id(pair))
    if path is None:
      raise pairs_lib.PairError(f"no fused image in {self.options.fused_dir}")
    try:
      fused = imageio.load_image(path)
    except (FileNotFoundError, ValueError) as error:
      raise pairs_lib.PairError(str(error)) from error
    height, width = sources[0].shape[:2]
    if fused.shape[:2] != (height, width):
      original = pairs_lib.load_pair(pair).sources[0].shape[:2]
      if self.options.max_side and fused.shape[:2] == original:
        fused = pairs_lib.resize_to(fused, height, width)
      else:
        raise pairs_lib.PairError(
          f"Fused image {path} is {fused.shape[0]}x{fused.shape[1]} (HxW) but pair "
          f"{pair.name!r} is {original[0]}x{original[1]}; fused images must keep the "
          "sources' size."
        )
    return fused, {"file": path.name}

  def header(self) -> dict:
    options = self.options
    label = options.name or options.pattern_method or Path(options.fused_dir).resolve().name
    header = self._header(
      label,
      {
        "max_pairs": options.max_pairs,
        "max_side": options.max_side,
        "fused_pattern": options.fused_pattern,
        "pattern_method": options.pattern_method,
        "allow_missing": options.allow_missing,
        "metrics": list(self.metrics),
      },
    )
    header.update(
      {
        "fused_dir": str(Path(options.fused_dir).resolve()),
        "model": None,
        "checkpoint": None,
        "skipped_pairs": self.missing,
      }
    )
    return header
