"""A trained stage ready to fuse: :class:`FusionModel`, and which checkpoint serves which task.

:mod:`fusionjax.checkpoints` stores and reads stage checkpoints (Orbax, metadata, lineage); this
module turns one into a :class:`FusionModel` and resolves what a user names (a workdir, the
shipped weights, a task) to the stage that fuses it (docs/DESIGN.md §1)::

  from fusionjax import stages
  model = stages.load_model(None, task="mif")      # the shipped 'meif' stage
  model = stages.load_model("runs/ivf", task="ivf")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from fusionjax import tasks
from fusionjax import weights

#: The ``ckpt`` value (besides ``None``) that selects the shipped weights.
SHIPPED = "shipped"


def as_variables(params: Any) -> Mapping:
  """Flax variables ``{'params': ...}`` of a parameter tree (a variables dict passes through)."""
  if isinstance(params, Mapping) and "params" in params:
    return params
  return {"params": params}


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
    from fusionjax.evaluation import cost  # Deferred: the evaluation package imports the metrics.

    return cost.count_parameters(self.params)

  @property
  def variables(self) -> Mapping:
    """The network's Flax variables, for ``self.model.apply(self.variables, y1, y2)``."""
    return as_variables(self.params)

  @property
  def colornet_variables(self) -> Mapping | None:
    """ColorNet's Flax variables, or None without a ColorNet."""
    return None if self.colornet_params is None else as_variables(self.colornet_params)


def load_fusion_model(
  path: str | os.PathLike, *, expected_task: str | None = None, step: int | None = None
) -> FusionModel:
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
  from fusionjax import checkpoints  # Deferred: Orbax is slow to import.
  from fusionjax import models  # Deferred: models import Flax.

  metadata = checkpoints.read_metadata(path, step)
  task = metadata.get("task")
  if expected_task is not None and task != expected_task:
    raise ValueError(
      f"Checkpoint {path} was trained for task {task!r}, but {expected_task!r} is needed here. "
      "Point to a checkpoint of the right stage."
    )
  checkpointer = checkpoints.StageCheckpointer(path, create=False)
  try:
    state, metadata = checkpointer.restore(metadata["step"])
  finally:
    checkpointer.close()
  model = models.create_model(metadata["model"])
  colornet = colornet_params = None
  if metadata.get("colornet") is not None and "colornet_params" in state:
    colornet = models.ColorNet(**metadata["colornet"])
    colornet_params = state["colornet_params"]
  return FusionModel(
    task=task,
    model=model,
    params=state["params"],
    colornet=colornet,
    colornet_params=colornet_params,
    metadata=metadata,
    path=str(Path(path).absolute()),
    step=int(metadata["step"]),
  )


def stage_for_task(task: str | None) -> str | None:
  """The stage that serves a fusion task (:func:`fusionjax.tasks.stage_of_task`); None for None.

  Args:
    task: 'mfif', 'meif', 'ivf', 'mif' (served by 'meif', paper §4.5) or None.

  Raises:
    ValueError: an unknown task.
  """
  return None if task is None else tasks.stage_of_task(task)


def is_shipped(ckpt) -> bool:
  """Whether ``ckpt`` asks for the shipped weights: ``None``, or ``'shipped'`` when no such folder exists."""
  return ckpt is None or (isinstance(ckpt, str) and ckpt == SHIPPED and not Path(SHIPPED).exists())


def load_model(ckpt=None, *, task: str | None = None) -> FusionModel:
  """Loads a stage checkpoint (or passes a ``FusionModel`` through), checking its task.

  Args:
    ckpt: a stage workdir, its ``checkpoints`` directory, or a ``FusionModel``; ``None`` or ``'shipped'``
      loads the weights shipped with the package (:mod:`fusionjax.weights`) for ``task``.
    task: expected task ('mfif', 'meif', 'ivf', or 'mif' which expects 'meif'); ``None`` accepts any
      (but the shipped weights need it).

  Returns:
    The ``FusionModel``.
  """
  expected = stage_for_task(task)
  if isinstance(ckpt, FusionModel):
    if expected is not None and ckpt.task != expected:
      raise ValueError(
        f"The model was trained for task {ckpt.task!r}, but {task!r} needs a {expected!r} "
        "checkpoint. Point to a checkpoint of the right stage."
      )
    return ckpt
  if is_shipped(ckpt):
    if expected is None:
      raise ValueError(
        f"No checkpoint given: name the task ({', '.join(tasks.TASKS)}) to use the shipped weights, "
        "or pass the workdir of a trained stage."
      )
    return load_fusion_model(weights.shipped_checkpoint(expected), expected_task=expected)
  path = Path(ckpt).expanduser()
  if not path.exists():
    raise FileNotFoundError(
      f"Checkpoint directory {path} does not exist. Pass the --workdir of a finished "
      "`python train.py` run (e.g. runs/meif)."
    )
  try:
    return load_fusion_model(path, expected_task=expected)
  except ValueError as error:
    if task == "mif" and "needed here" in str(error):
      raise ValueError(
        f"{error} Medical fusion uses the multi-exposure (meif) stage, as in the paper."
      ) from error
    raise
