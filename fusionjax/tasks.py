"""The task vocabulary: fusion tasks, training stages, and how they relate.

One home for the names every other module uses (``docs/DESIGN.md`` §1–2):

- a *stage* is a trained network: ``mfif`` → ``meif`` → ``ivf``, each taught by the one before it
  (sequential gradient transfer);
- a *task* is what a user fuses: the three stages' tasks plus ``mif`` (medical pairs), which the
  ``meif`` stage serves without training on medical data;
- each task's sources come in a fixed order (paper §3.2), which readers, the data pipeline and the
  networks rely on.

  from fusionjax import tasks
  tasks.STAGES                 # ('mfif', 'meif', 'ivf')
  tasks.TEACHER_OF["ivf"]      # 'meif'
  tasks.STAGE_OF_TASK["mif"]   # 'meif'
  tasks.SOURCE_ORDER["ivf"]    # ('visible', 'infrared')
"""

from __future__ import annotations

#: The trained stages, in training order; each stage's teacher is the one before it.
STAGES = ("mfif", "meif", "ivf")

#: Every task a pair can belong to: the stages' tasks and medical fusion.
TASKS = STAGES + ("mif",)

#: The teacher stage of each stage that has one (the first stage learns from references alone).
TEACHER_OF = {later: earlier for earlier, later in zip(STAGES, STAGES[1:])}

#: The stage that fuses each task: medical pairs use the multi-exposure stage (paper §4.5).
STAGE_OF_TASK = {"mfif": "mfif", "meif": "meif", "ivf": "ivf", "mif": "meif"}

#: The order of each task's sources (paper §3.2): every reader, batch and network follows it.
SOURCE_ORDER = {
  "mfif": ("near", "far"),
  "meif": ("under", "over"),
  "ivf": ("visible", "infrared"),
  "mif": ("MRI", "other"),
}

#: Stages trained with a reference image (1 − SSIM against it); the others have no label.
SUPERVISED_STAGES = ("mfif", "meif")


def check_stage(stage: str) -> str:
  """Returns ``stage`` if it names a training stage; otherwise raises a ValueError naming the stages."""
  if stage not in STAGES:
    raise ValueError(f"Unknown stage {stage!r}; use one of {', '.join(STAGES)}.")
  return stage


def stage_of_task(task: str) -> str:
  """The stage that fuses ``task`` (case-insensitive); a ValueError naming the tasks otherwise."""
  stage = STAGE_OF_TASK.get(str(task).lower())
  if stage is None:
    raise ValueError(f"Unknown task {task!r}; use one of {', '.join(TASKS)}.")
  return stage
