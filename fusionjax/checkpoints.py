"""Stage checkpoints: Orbax storage of a train state plus JSON metadata that links the stages.

A stage's workdir holds ``WORKDIR/checkpoints/<step>/`` with two items:

- ``state``: the train state, a dict pytree with ``step``, ``params``, ``opt_state``, ``rng`` and, for
  the multi-exposure stage, ``colornet_params`` and ``colornet_opt_state``.
- ``metadata``: JSON with ``format``, ``task``, ``model`` (the model config, fed back to
  :func:`fusionjax.models.create_model`), ``colornet`` (ColorNet keyword arguments or ``None``),
  ``config`` (the experiment config), ``teacher`` (``None`` or ``{"path", "step", "task",
  "metadata"}`` with the teacher's own metadata embedded), ``workdir`` (where the stage was trained),
  ``fusionjax_version`` and ``step``.

Because every stage embeds its teacher's metadata, the chain MFIF -> MEIF -> IVF can be read from
the last stage's checkpoint alone (:func:`stage_lineage`), even when the earlier workdirs are gone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "fusionjax.stage/1"
TASKS = ("mfif", "meif", "ivf")
_STATE, _METADATA = "state", "metadata"


def _ocp():
  import orbax.checkpoint as ocp  # Deferred: importing Orbax is slow and not every caller needs it.
  return ocp


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
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=(_STATE, _METADATA))

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
    _check_json(metadata)
    args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state), _METADATA: ocp.args.JsonSave(metadata)})
    return self._manager.save(int(step), args=args, force=force)

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
      raise FileNotFoundError(f"No checkpoint for step {step} in {self.directory}; saved steps: {self.all_steps()}.")
    if state_template is None:
      state_args = ocp.args.StandardRestore()
    else:
      import jax
      template = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
      state_args = ocp.args.StandardRestore(template)
    restored = self._manager.restore(step, args=ocp.args.Composite(**{_STATE: state_args, _METADATA: ocp.args.JsonRestore()}))
    return restored[_STATE], restored[_METADATA]

  def read_metadata(self, step: int | None = None) -> dict:
    """Reads only the metadata item of ``step`` (default: the latest)."""
    ocp = _ocp()
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(_missing_message(self.directory))
    restored = self._manager.restore(step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()}))
    return restored[_METADATA]

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _missing_message(path) -> str:
  return (f"No fusionjax checkpoint found at {path} (expected a stage workdir containing checkpoints/<step>/). "
          "Pass the --workdir of a finished `python train.py` run, or train one first, e.g. "
          "`python train.py --config=configs/mfif.py --workdir=runs/mfif`.")


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
    raise ValueError(f"{path} is not a fusionjax stage checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r}).")
  return metadata


def stage_lineage(metadata: dict) -> list[dict]:
  """The chain of stages from this checkpoint back to the first one.

  Returns:
    ``[{"task", "path", "step"}, ...]`` starting with this stage (its ``path`` is the
    recorded ``workdir``, ``None`` if absent) and following each embedded teacher.
  """
  chain = [{"task": metadata.get("task"), "path": metadata.get("workdir"), "step": metadata.get("step")}]
  teacher = metadata.get("teacher")
  while teacher:
    chain.append({"task": teacher.get("task"), "path": teacher.get("path"), "step": teacher.get("step")})
    teacher = (teacher.get("metadata") or {}).get("teacher")
  return chain


@dataclasses.dataclass
class FusionModel:
  """A trained (or freshly initialised) fusion network ready for inference.

  Attributes:
    task: 'mfif', 'meif' or 'ivf': the stage that produced the weights.
    model: the Flax module (FRUFN or EFRUFN) built from the recorded model config.
    params: its parameters.
    colornet: the ColorNet module, or ``None`` (only the MEIF stage trains one).
    colornet_params: its parameters, or ``None``.
    metadata: the checkpoint metadata (empty for an untrained model).
    path: where the weights came from (``None`` for an untrained model).
    step: the training step of the weights.
  """

  task: str
  model: Any
  params: Any
  colornet: Any = None
  colornet_params: Any = None
  metadata: dict = dataclasses.field(default_factory=dict)
  path: str | None = None
  step: int | None = None

  @property
  def num_params(self) -> int:
    """Number of parameters of the fusion network (ColorNet excluded)."""
    return int(sum(np.size(leaf) for leaf in _leaves(self.params)))


def _leaves(tree):
  import jax
  return jax.tree.leaves(tree)


def load_fusion_model(path: str | os.PathLike, *, expected_task: str | None = None, step: int | None = None) -> FusionModel:
  """Loads a stage checkpoint for inference.

  Args:
    path: a stage workdir (the ``--workdir`` of ``train.py``) or its ``checkpoints`` directory.
    expected_task: if given, the checkpoint's task must match (e.g. a stage-2 teacher must be 'mfif').
    step: which checkpoint; default the latest.

  Returns:
    A :class:`FusionModel`.

  Raises:
    FileNotFoundError: nothing to load at ``path``.
    ValueError: the checkpoint belongs to another task, or is not a fusionjax checkpoint.
  """
  from fusionjax import models  # Deferred: models import Flax.

  metadata = read_metadata(path, step)
  task = metadata.get("task")
  if expected_task is not None and task != expected_task:
    raise ValueError(f"Checkpoint {path} was trained for task {task!r}, but {expected_task!r} is needed here. "
                     "Point to a checkpoint of the right stage.")
  checkpointer = StageCheckpointer(path, create=False)
  try:
    state, metadata = checkpointer.restore(metadata["step"])
  finally:
    checkpointer.close()
  model = models.create_model(metadata["model"])
  colornet = colornet_params = None
  if metadata.get("colornet") is not None and "colornet_params" in state:
    colornet = models.ColorNet(**metadata["colornet"])
    colornet_params = state["colornet_params"]
  return FusionModel(task=task, model=model, params=state["params"], colornet=colornet,
                     colornet_params=colornet_params, metadata=metadata, path=str(Path(path).absolute()),
                     step=int(metadata["step"]))
