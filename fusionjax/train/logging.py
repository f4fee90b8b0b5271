"""Progress a person can follow: log lines, ``metrics.jsonl`` and sample grids.

- :class:`MetricsWriter` appends one JSON object per logged step to ``WORKDIR/metrics.jsonl``. On
  resume it first drops the lines past the restored step, so the file never holds two histories.
- :class:`Progress` measures steps/s and the time left, and formats the periodic line, e.g.
  ``[meif] step 1200/10000 | loss 0.2143 | ssim_loss 0.1801 | gradient_transfer 0.0342 | color 0.0211
  | deq 5.0 it, res 3.1e-03 | 2.41 steps/s | ETA 1h00m51s``.
- :func:`quiet_library_logs` keeps Orbax's INFO chatter out of the progress lines.
- :func:`write_sample_grid` writes ``WORKDIR/samples_step_N.png``: one row per example, columns
  sources | fused | reference.
"""

from __future__ import annotations

import json
import logging as py_logging
import math
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from absl import logging as absl_logging

from fusionjax import imageio

METRICS_FILE = "metrics.jsonl"
# Terms printed first, in this order; anything else follows alphabetically.
_TERM_ORDER = (
  "loss",
  "ssim_loss",
  "intensity",
  "texture",
  "structure",
  "gradient_transfer",
  "color",
)
# Separator between grid cells, in pixels, and its grey level.
_GAP, _GAP_LEVEL = 2, 1.0


class _DropInfoFrom(py_logging.Filter):
  """Drops records below WARNING whose source file path contains one of ``fragments``."""

  def __init__(self, fragments: Sequence[str]):
    super().__init__()
    self.fragments = tuple(fragments)

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or not any(
      f in record.pathname for f in self.fragments
    )


def quiet_library_logs(fragments: Sequence[str] = ("/orbax/", "/jax/_src/xla_bridge.py")) -> None:
  """Hides the INFO lines of libraries that log through absl (Orbax logs ~30 per checkpoint; JAX
  says at every start that it found no TPU).

  Warnings and errors still show. Called by ``train.py`` and ``evaluate.py``; the library itself
  leaves logging alone.
  """
  logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _DropInfoFrom) for f in logger.filters):
    logger.addFilter(_DropInfoFrom(fragments))


class MetricsWriter:
  """Appends scalar metrics to ``WORKDIR/metrics.jsonl``.

  Args:
    workdir: the stage's working directory (must exist).
    resume_step: the step the run starts from; lines with a larger ``step`` (left by an interrupted
      run after its last checkpoint) are removed.
  """

  def __init__(self, workdir: str | os.PathLike, resume_step: int = 0):
    self.path = Path(workdir) / METRICS_FILE
    if self.path.exists():
      kept = [
        line
        for line in self.path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= resume_step
      ]
      tmp = self.path.with_suffix(".jsonl.tmp")
      tmp.write_text("".join(line + "\n" for line in kept))
      os.replace(tmp, self.path)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Appends ``{"step": step, **scalars}`` as one line."""
    record = {"step": int(step)}
    record.update({k: _jsonable(v) for k, v in scalars.items()})
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
  """Reads ``WORKDIR/metrics.jsonl`` back as a list of dicts (empty if the file is absent)."""
  path = Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonable(value) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None


class Progress:
  """Steps/s and ETA over the steps run in this process (compilation excluded after the first log).

  Args:
    name: label of the run (the task), printed first.
    start_step: the step the run starts from.
    num_steps: the final step.
  """

  def __init__(self, name: str, start_step: int, num_steps: int):
    self.name, self.num_steps = name, num_steps
    self._last_step, self._last_time = start_step, time.perf_counter()
    self.steps_per_sec: float | None = None

  def update(self, step: int) -> float | None:
    """Records that ``step`` is done; returns steps/s since the previous update."""
    now = time.perf_counter()
    if step > self._last_step and now > self._last_time:
      self.steps_per_sec = (step - self._last_step) / (now - self._last_time)
    self._last_step, self._last_time = step, now
    return self.steps_per_sec

  def eta_seconds(self, step: int) -> float | None:
    """Seconds to ``num_steps`` at the current rate, or None before a rate is known."""
    if not self.steps_per_sec:
      return None
    return (self.num_steps - step) / self.steps_per_sec

  def line(self, step: int, scalars: Mapping[str, float]) -> str:
    """The human-readable progress line for ``step``."""
    parts = [f"[{self.name}] step {step}/{self.num_steps}"]
    names = [k for k in _TERM_ORDER if k in scalars]
    names += sorted(
      k
      for k in scalars
      if k not in _TERM_ORDER
      and not k.startswith(("deq_", "all_finite"))
      and k not in ("grad_norm", "learning_rate")
    )
    parts += [f"{k} {scalars[k]:.4f}" for k in names]
    if "deq_steps" in scalars:
      parts.append(f"deq {scalars['deq_steps']:.1f} it, res {scalars['deq_rel_residual']:.1e}")
    if "grad_norm" in scalars:
      parts.append(f"|g| {scalars['grad_norm']:.3g}")
    if "learning_rate" in scalars:
      parts.append(f"lr {scalars['learning_rate']:.2e}")
    if self.steps_per_sec:
      parts.append(f"{self.steps_per_sec:.2f} steps/s")
    eta = self.eta_seconds(step)
    if eta is not None:
      parts.append(f"ETA {format_duration(eta)}")
    return " | ".join(parts)


def format_duration(seconds: float) -> str:
  """Formats seconds as ``1h02m03s``, ``2m03s`` or ``3s``."""
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m{secs:02d}s"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


def sample_grid(columns: Sequence[np.ndarray]) -> np.ndarray:
  """Tiles images into one RGB picture: row i holds example i of every column.

  Args:
    columns: arrays (B, H, W, C) in [0, 1] with the same B, H, W; C is 1 (grey) or 3 (RGB).

  Returns:
    (B·H + gaps, n·W + gaps, 3) float32 array in [0, 1], white gaps between cells.
  """
  if not columns:
    raise ValueError("sample_grid needs at least one column of images.")
  shape = columns[0].shape[:3]
  rgb = []
  for column in columns:
    column = np.clip(np.asarray(column, np.float32), 0.0, 1.0)
    if column.shape[:3] != shape or column.shape[-1] not in (1, 3):
      raise ValueError(
        f"sample_grid columns must be (B, H, W, 1 or 3) of one size; got {column.shape} and {shape}."
      )
    rgb.append(np.repeat(column, 3, axis=-1) if column.shape[-1] == 1 else column)
  batch, height, width = shape
  n = len(rgb)
  grid = np.full(
    (batch * height + (batch - 1) * _GAP, n * width + (n - 1) * _GAP, 3), _GAP_LEVEL, np.float32
  )
  for i in range(batch):
    for j, column in enumerate(rgb):
      top, left = i * (height + _GAP), j * (width + _GAP)
      grid[top : top + height, left : left + width] = column[i]
  return grid


def write_sample_grid(workdir: str | os.PathLike, step: int, columns: Sequence[np.ndarray]) -> Path:
  """Writes :func:`sample_grid` of ``columns`` to ``WORKDIR/samples_step_<step>.png`` (atomically)."""
  return imageio.save_image(Path(workdir) / f"samples_step_{int(step)}.png", sample_grid(columns))
