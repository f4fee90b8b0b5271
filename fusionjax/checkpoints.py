"""Stage checkpoints: Orbax storage of a train state plus JSON metadata that links the stages.

A stage's workdir holds ``WORKDIR/checkpoints/<step>/`` with two items:

- ``state``: the train state, a dict pytree with ``step``, ``params``, ``opt_state``, ``rng`` and, for
  the multi-exposure stage, ``colornet_params`` and ``colornet_opt_state``.
- ``metadata``: JSON with ``format``, ``task``, ``model`` (the model config, fed back to
  :func:`fusionjax.models.create_model`), ``colornet`` (ColorNet keyword arguments or ``None``),
  ``config`` (the experiment config), ``teacher`` (``None`` or ``{"path", "step", "task",
  "metadata"}`` with the teacher's own metadata embedded), ``workdir`` (where the stage was trained),
  ``fusionjax_version``, ``step`` and ``params_sha256`` (a checksum of the parameters, checked on
  restore; older checkpoints have none).

:func:`fusionjax.stages.load_fusion_model` turns a checkpoint into a model ready to fuse.

Because every stage embeds its teacher's metadata, the chain MFIF -> MEIF -> IVF can be read from
the last stage's checkpoint alone (:func:`stage_lineage`), even when the earlier workdirs are gone.

Failures are reported in the package's terms, whatever Orbax and TensorStore raise underneath:

- a checkpoint whose files cannot be read back (truncated, bytes flipped, non-finite parameters) raises
  :class:`DamagedCheckpointError`, naming the step folder and what to do;
- a save that runs out of disk space raises :class:`DiskFullError` (an ``OSError`` with ``errno.ENOSPC``)
  naming the folder and the space one checkpoint needs; the partial step folder is removed and the
  checkpoints saved before it are left as they were.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

# A stage loaded for inference lives in fusionjax.stages; re-exported for the callers that load
# stages through this module (training, results/export_weights.py).
from fusionjax.stages import FusionModel as FusionModel
from fusionjax.stages import load_fusion_model as load_fusion_model

FORMAT = "fusionjax.stage/1"
_STATE, _METADATA = "state", "metadata"
# The parts of a state whose checksum the metadata records: what inference loads.
_DIGESTED = ("params", "colornet_params")
_DIGEST_KEY = "params_sha256"


def _ocp():
  import orbax.checkpoint as ocp  # Deferred: importing Orbax is slow and not every caller needs it.

  return ocp


class DamagedCheckpointError(ValueError):
  """A checkpoint exists but its files cannot be read back; the message names its folder and what to do."""


class DiskFullError(OSError):
  """A checkpoint could not be written for lack of disk space (``errno.ENOSPC``)."""


# Orbax abandons the other reads of a restore when one fails; TensorStore completes them later and
# calls back into the event loop Orbax has closed by then, and each callback prints this error.
_ABANDONED_READ = "Event loop is closed"
# How TensorStore words a full disk (its errors are ValueErrors carrying the OS error text).
_DISK_FULL = ("No space left on device", "os_error_code='28'", "Disk quota exceeded")
# Orbax's suffix for a step folder that is still being written.
_TMP_SUFFIX = ".orbax-checkpoint-tmp"


class _DropDiskFullReports(logging.Filter):
  """Drops Orbax's log records (with their tracebacks) about a full disk: :class:`DiskFullError` says it once."""

  def filter(self, record: logging.LogRecord) -> bool:
    if "/orbax/" not in record.pathname:
      return True
    text = record.getMessage() + (
      str(record.exc_info[1]) if record.exc_info and record.exc_info[1] else ""
    )
    return not any(marker in text for marker in _DISK_FULL)


def quiet_disk_full_reports() -> None:
  """Keeps Orbax's own reports of a full disk (an error line and traceback per writer thread) off the
  log; the :class:`DiskFullError` raised by :class:`StageCheckpointer` is the one report. Called by
  ``train.py``; the library leaves logging alone."""
  from absl import logging as absl_logging

  logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _DropDiskFullReports) for f in logger.filters):
    logger.addFilter(_DropDiskFullReports())


def _ignore_abandoned_reads() -> None:
  """Keeps the late callbacks of a failed restore (:data:`_ABANDONED_READ`) off stderr.

  Installed once, before the first restore; every other unraisable exception goes to the hook that
  was there before.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_fusionjax_abandoned_reads", False):
    return

  def hook(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == _ABANDONED_READ:
      return
    previous(unraisable)

  hook._fusionjax_abandoned_reads = True
  sys.unraisablehook = hook


def _is_damage(error: BaseException) -> bool:
  """Whether a restore failed on the files themselves (not, say, on a template of another structure)."""
  if isinstance(error, DamagedCheckpointError):
    return False
  if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
    return True
  if isinstance(error, OSError):  # A file gone or cut short; not one the user may not read.
    return not isinstance(error, PermissionError)
  # TensorStore's errors start with an absl status code: DATA_LOSS (checksums, bad headers),
  # OUT_OF_RANGE (truncated files), NOT_FOUND (missing chunks), ...
  return bool(
    re.match(
      r"(DATA_LOSS|OUT_OF_RANGE|NOT_FOUND|FAILED_PRECONDITION|INTERNAL|UNKNOWN): ", str(error)
    )
  )


def _join_orbax_threads(timeout_s: float = 60.0) -> None:
  """Waits for Orbax's background writer threads; when one write of a save fails, the others go on."""
  deadline = time.monotonic() + timeout_s
  for thread in threading.enumerate():
    if thread is not threading.current_thread() and type(thread).__module__.startswith("orbax."):
      thread.join(max(0.0, deadline - time.monotonic()))


def _short_reason(error: BaseException) -> str:
  """A few words on why reading failed: TensorStore's status code, else the error's first clause."""
  text = str(error).strip()
  code = re.match(r"([A-Z][A-Z_]+): ", text)
  if code:
    return code.group(1).lower().replace("_", " ")
  first = re.split(r"[:\n]", text, maxsplit=1)[0].strip()
  return f"{type(error).__name__}: {first[:80]}" if first else type(error).__name__


def is_disk_full(error: BaseException) -> bool:
  """Whether ``error`` (an OSError, or TensorStore's ValueError wrapping one) reports a full disk."""
  if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
    return True
  return isinstance(error, (OSError, ValueError, RuntimeError)) and any(
    m in str(error) for m in _DISK_FULL
  )


def _format_bytes(count: float) -> str:
  for unit in ("bytes", "KiB", "MiB", "GiB"):
    if count < 1024 or unit == "GiB":
      return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
    count /= 1024
  return f"{count:.1f} GiB"


def params_digest(state: Any) -> str | None:
  """SHA-256 of the parameters of a state (``params`` and ``colornet_params``), or None if it has none.

  Leaves are taken in the order of their key paths with their dtype and shape, so the digest does not
  depend on how the pytree was rebuilt on restore.
  """
  import jax

  if not isinstance(state, dict):
    return None
  parts = {k: state[k] for k in _DIGESTED if state.get(k) is not None}
  if not parts:
    return None
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(parts)[0]
  for key, leaf in sorted(
    ((jax.tree_util.keystr(path), leaf) for path, leaf in leaves), key=lambda item: item[0]
  ):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{key}|{array.dtype}|{array.shape}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _disk_bytes(folder: Path) -> int:
  """Disk space the files under ``folder`` take (allocated blocks, as ``du`` counts them)."""
  return int(sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()))


def _tree_bytes(tree: Any) -> int:
  import jax

  return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tree)))


def checkpoint_dir(path: str | os.PathLike) -> Path:
  """Returns the Orbax directory of a stage: ``path/checkpoints``, or ``path`` itself if it is one."""
  path = Path(path).expanduser().absolute()
  if path.name == "checkpoints":
    return path
  return path / "checkpoints"


class StageCheckpointer:
  """Saves and restores one stage's train state and metadata (keep-latest-N, async saves).

  Args:
    workdir: the stage's working directory; checkpoints go to ``workdir/checkpoints``.
    max_to_keep: how many of the newest checkpoints to keep.
    create: create the directory if it does not exist (readers pass ``False``).
  """

  def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3, create: bool = True):
    ocp = _ocp()
    self.directory = checkpoint_dir(workdir)
    if not create and not self.directory.is_dir():
      raise FileNotFoundError(_missing_message(workdir))
    _ignore_abandoned_reads()  # Failed saves and restores leave such callbacks behind.
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=(_STATE, _METADATA)
    )
    self._pending: tuple[int, int] | None = (
      None  # (step, bytes of its state) of the last save started
    )

  def latest_step(self) -> int | None:
    """The newest saved step, or ``None`` when nothing has been saved."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: dict, metadata: dict, *, force: bool = False) -> bool:
    """Saves ``state`` and ``metadata`` as checkpoint ``step`` (asynchronously).

    Returns:
      Whether a checkpoint was written.
    """
    ocp = _ocp()
    metadata = dict(metadata, step=int(step))
    digest = params_digest(state)
    if digest is not None:
      metadata[_DIGEST_KEY] = digest
    _check_json(metadata)
    args = ocp.args.Composite(
      **{_STATE: ocp.args.StandardSave(state), _METADATA: ocp.args.JsonSave(metadata)}
    )
    with self._reporting_disk_full():  # Orbax reports a failed earlier (asynchronous) save here.
      self._manager.wait_until_finished()
      self._pending = (int(step), _tree_bytes(state))
      return self._manager.save(int(step), args=args, force=force)

  @contextlib.contextmanager
  def _reporting_disk_full(self) -> Iterator[None]:
    """Turns Orbax's and TensorStore's errors for a full disk into one :class:`DiskFullError`."""
    try:
      yield
    except Exception as error:
      if not is_disk_full(error) or isinstance(error, DiskFullError):
        raise
      raise self._disk_full() from error

  def committed_steps(self) -> list[int]:
    """Steps whose folder is complete on disk (Orbax renames a step folder into place once written)."""
    if not self.directory.is_dir():
      return []
    return sorted(int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit())

  def disk_full_error(self, what: str) -> DiskFullError:
    """The :class:`DiskFullError` for a write (``what``) that found no space next to the checkpoints.

    Removes the partial step folder Orbax leaves behind (never a good checkpoint, and its space is
    needed); the committed checkpoints are not touched.
    """
    for partial in self.directory.glob(f"*{_TMP_SUFFIX}"):
      shutil.rmtree(partial, ignore_errors=True)
    free = shutil.disk_usage(self.directory).free
    committed = self.committed_steps()
    # One more checkpoint: as large as the last one on disk (blocks, as `du` counts), else the state's bytes.
    needed = max(
      self._pending[1] if self._pending is not None else 0,
      _disk_bytes(self.directory / str(committed[-1])) if committed else 0,
    )
    kept = (
      f"the last good checkpoint (step {committed[-1]}) is intact"
      if committed
      else "no checkpoint was saved there yet"
    )
    need = f"A checkpoint needs about {_format_bytes(needed)} and " if needed else ""
    return DiskFullError(
      errno.ENOSPC,
      f"No space left on device for {what} in {self.directory.parent}: {kept}. "
      f"{need}{_format_bytes(free)} are free there: free some space and rerun the same command "
      "to resume.",
    )

  def _disk_full(self) -> DiskFullError:
    step = self._pending[0] if self._pending is not None else None
    with contextlib.suppress(Exception):
      self._manager.wait_until_finished()
    _join_orbax_threads()  # The writes of the failed save that did not fail: before its folder is removed.
    return self.disk_full_error(f"checkpoint step {step}" if step is not None else "a checkpoint")

  def restore(self, step: int | None = None, state_template: Any = None) -> tuple[dict, dict]:
    """Restores (state, metadata) of ``step`` (default: the latest).

    Args:
      step: which checkpoint; ``None`` for the latest.
      state_template: a pytree with the structure, shapes and dtypes to restore into (e.g. a freshly
        initialised train state, so optimiser states come back as their own types). ``None``
        restores plain nested dicts of arrays.

    Raises:
      FileNotFoundError: there is no checkpoint (at that step).
    """
    ocp = _ocp()
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(_missing_message(self.directory))
    elif step not in self._manager.all_steps():
      raise FileNotFoundError(
        f"No checkpoint for step {step} in {self.directory}; saved steps: {self.all_steps()}."
      )
    if state_template is None:
      state_args = ocp.args.StandardRestore()
    else:
      import jax

      template = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
      state_args = ocp.args.StandardRestore(template)
    with self._reporting_damage(step):
      restored = self._manager.restore(
        step, args=ocp.args.Composite(**{_STATE: state_args, _METADATA: ocp.args.JsonRestore()})
      )
    state, metadata = restored[_STATE], restored[_METADATA]
    expected = metadata.get(_DIGEST_KEY) if isinstance(metadata, dict) else None
    if expected is not None and params_digest(state) != expected:
      raise self._damaged(
        step, "its parameters differ from the checksum recorded when it was saved"
      )
    if not _all_finite({k: state.get(k) for k in _DIGESTED} if isinstance(state, dict) else state):
      raise self._damaged(step, "its parameters hold NaN or infinite values")
    return state, metadata

  @contextlib.contextmanager
  def _reporting_damage(self, step: int) -> Iterator[None]:
    """Turns a failure to read checkpoint ``step``'s files back into one :class:`DamagedCheckpointError`."""
    try:
      yield
    except Exception as error:
      if not _is_damage(error):
        raise
      raise self._damaged(step, _short_reason(error)) from error

  def _damaged(self, step: int, reason: str) -> DamagedCheckpointError:
    return DamagedCheckpointError(damaged_message(self.directory, step, reason, self.all_steps()))

  def read_metadata(self, step: int | None = None) -> dict:
    """Reads only the metadata item of ``step`` (default: the latest)."""
    ocp = _ocp()
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(_missing_message(self.directory))
    with self._reporting_damage(step):
      restored = self._manager.restore(
        step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()})
      )
      metadata = restored[_METADATA]
      if not isinstance(metadata, dict):
        raise self._damaged(step, f"its metadata is a {type(metadata).__name__}, not a JSON object")
    return metadata

  def wait_until_finished(self) -> None:
    with self._reporting_disk_full():
      self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      self.wait_until_finished()
    except BaseException:
      with contextlib.suppress(Exception):  # The error above is the one to report.
        self._manager.close()
      raise
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _all_finite(tree: Any) -> bool:
  import jax

  return all(
    np.isfinite(np.asarray(leaf)).all()
    for leaf in jax.tree.leaves(tree)
    if np.issubdtype(np.asarray(leaf).dtype, np.inexact)
  )


def damaged_message(
  directory: str | os.PathLike, step: int, reason: str, steps: Sequence[int] = ()
) -> str:
  """One line: which checkpoint folder is damaged, why, and what to do about it."""
  directory = checkpoint_dir(directory)
  folder = directory / str(step)
  from fusionjax import weights  # Deferred: only for this message.

  if weights.WEIGHTS_DIR in folder.resolve().parents:
    todo = (
      "These are the weights shipped with fusionjax: restore them (`git checkout -- fusionjax/weights` in a "
      "checkout, or reinstall fusionjax), re-export them (python results/export_weights.py runs/cpu), or "
      "use a stage you trained."
    )
  else:
    others = sorted(s for s in steps if s != step)
    fallback = (
      f", move {folder.name}/ out of {directory} to fall back to step {others[-1]}"
      if others
      else ""
    )
    todo = (
      f"Re-train the stage (its train.py command with a fresh --workdir){fallback}, or point to another "
      "checkpoint."
    )
  return f"Checkpoint {folder} is damaged ({reason}): its files cannot be read back. {todo}"


def _missing_message(path) -> str:
  return (
    f"No fusionjax checkpoint found at {path} (expected a stage workdir containing checkpoints/<step>/). "
    "Pass the --workdir of a finished `python train.py` run, or train one first, e.g. "
    "`python train.py --config=configs/mfif.py --workdir=runs/mfif`."
  )


def _check_json(metadata: dict) -> None:
  try:
    json.dumps(metadata)
  except TypeError as error:
    raise TypeError(f"Checkpoint metadata must be JSON-serialisable: {error}") from error


def read_metadata(path: str | os.PathLike, step: int | None = None) -> dict:
  """Reads the metadata of a stage workdir's latest (or given) checkpoint.

  Raises:
    FileNotFoundError: ``path`` holds no checkpoint; the message says how to make one.
  """
  directory = checkpoint_dir(path)
  if not directory.is_dir():
    raise FileNotFoundError(_missing_message(path))
  checkpointer = StageCheckpointer(path, create=False)
  try:
    metadata = checkpointer.read_metadata(step)
  finally:
    checkpointer.close()
  if metadata.get("format") != FORMAT:
    raise ValueError(
      f"{path} is not a fusionjax stage checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})."
    )
  return metadata


def stage_lineage(metadata: dict) -> list[dict]:
  """The chain of stages from this checkpoint back to the first one.

  Returns:
    ``[{"task", "path", "step"}, ...]`` starting with this stage (its ``path`` is the
    recorded ``workdir``, ``None`` if absent) and following each embedded teacher.
  """
  chain = [
    {"task": metadata.get("task"), "path": metadata.get("workdir"), "step": metadata.get("step")}
  ]
  teacher = metadata.get("teacher")
  while teacher:
    chain.append(
      {"task": teacher.get("task"), "path": teacher.get("path"), "step": teacher.get("step")}
    )
    teacher = (teacher.get("metadata") or {}).get("teacher")
  return chain
