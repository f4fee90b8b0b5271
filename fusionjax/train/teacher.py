"""The teacher of a stage: the frozen previous-stage model of the gradient-transfer loss (paper §3.1).

MEIF learns from the MFIF model and IVF from the MEIF model (``fusionjax.tasks.TEACHER_OF``). Before
anything is written, :func:`resolve_teacher` finds the teacher's checkpoint and checks its task from
the metadata alone; :func:`load_teacher` then builds its network from the model config recorded in
its checkpoint and loads its parameters. A resumed run keeps the teacher recorded in its own
checkpoint, so all its steps see the same teacher.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from fusionjax import checkpoints
from fusionjax import tasks


def _config_variant(config: ml_collections.ConfigDict) -> str:
  """``':smoke'`` or ``':cpu'`` when ``config`` is that variant of its stage, else ``''``.

  Read from the default workdir, which the variants set to ``runs/<variant>/<task>``
  (``configs/common.py``), so that a hint names the command of the same variant.
  """
  parts = Path(str(config.get("workdir_default") or "")).parts
  return (
    f":{parts[1]}" if len(parts) == 3 and parts[0] == "runs" and parts[2] == config.task else ""
  )


@dataclasses.dataclass
class Teacher:
  """A frozen previous-stage model.

  Attributes:
    path: absolute path of the teacher's stage workdir.
    step: the checkpoint step used.
    metadata: the teacher checkpoint's metadata (embedded into this stage's metadata).
    model: the teacher's network, built from its own recorded model config.
    params: its parameters (host arrays).
  """

  path: str
  step: int
  metadata: dict
  model: Any = None
  params: Any = None

  @property
  def record(self) -> dict:
    """The ``teacher`` entry of this stage's checkpoint metadata."""
    return {
      "path": self.path,
      "step": self.step,
      "task": self.metadata.get("task"),
      "metadata": self.metadata,
    }


def uses_teacher(config: ml_collections.ConfigDict) -> bool:
  """Whether the stage trains with the gradient-transfer term (a teacher is needed)."""
  return (
    config.task in tasks.TEACHER_OF
    and bool(config.use_teacher)
    and float(config.loss.lambda_gt) > 0.0
  )


def resolve_teacher(config: ml_collections.ConfigDict, existing: dict | None) -> Teacher | None:
  """Finds and checks the teacher checkpoint (metadata only; parameters are loaded later).

  A resumed run keeps the teacher recorded in its checkpoint, so all its steps see the same teacher.

  Returns:
    A :class:`Teacher` without model and parameters, or None when the stage trains without one.

  Raises:
    FileNotFoundError: no checkpoint at the teacher path.
    ValueError: the teacher was trained for another task than the previous stage.
  """
  if not uses_teacher(config):
    return None
  needed = tasks.TEACHER_OF[config.task]
  recorded = (existing or {}).get("teacher")
  if recorded:
    path, step = recorded["path"], recorded["step"]
    if config.teacher_ckpt and Path(config.teacher_ckpt).expanduser().absolute() != Path(path):
      logging.warning(
        "Resuming with the teacher recorded in the checkpoint (%s, step %d), not "
        "--config.teacher_ckpt=%s.",
        path,
        step,
        config.teacher_ckpt,
      )
  else:
    if not config.teacher_ckpt:
      raise ValueError(
        f"Stage {config.task!r} needs a {needed!r} teacher: pass --config.teacher_ckpt=DIR "
        f"(the --workdir of the {needed} run), or train without it with --config.use_teacher=False."
      )
    path, step = str(Path(config.teacher_ckpt).expanduser().absolute()), config.get("teacher_step")
  try:
    metadata = checkpoints.read_metadata(path, step)
  except FileNotFoundError as error:
    found = (
      "no checkpoints/<step>/ there"
      if not checkpoints.checkpoint_dir(path).is_dir()
      else str(error).rstrip(".")
    )
    raise FileNotFoundError(
      f"Teacher checkpoint for stage {config.task!r} not found at {path} ({found}). Train the {needed} stage "
      f"first (python train.py --config=configs/{needed}.py{_config_variant(config)} --workdir={path}) or "
      f"point --config.teacher_ckpt at its workdir."
    ) from error
  if metadata.get("task") != needed:
    raise ValueError(
      f"Teacher checkpoint {path} was trained for {metadata.get('task')!r}, but stage "
      f"{config.task!r} needs a {needed!r} teacher (MFIF -> MEIF -> IVF). Point "
      f"--config.teacher_ckpt at the {needed} workdir."
    )
  return Teacher(path=str(path), step=int(metadata["step"]), metadata=metadata)


def load_teacher(teacher: Teacher) -> Teacher:
  """``teacher`` with its network and parameters, loaded from its checkpoint."""
  loaded = checkpoints.load_fusion_model(
    teacher.path, expected_task=teacher.metadata["task"], step=teacher.step
  )
  return dataclasses.replace(teacher, model=loaded.model, params=loaded.params)
