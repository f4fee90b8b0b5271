"""Reference weights shipped inside the package, so that fusion works with no download.

Two sets of EFRUFN stages (MFIF, MEIF with its ColorNet, IVF), each an ordinary stage checkpoint
(``fusionjax.checkpoints``) without its optimiser state:

- ``efrufn_w16_cpu`` (the default): ``efrufn_cpu`` fine-tuned on a CPU by
  ``results/finetune_cpu.sh`` (96-px crops, the ``more_natural`` photographs beside
  ``clean_natural``, black-out exposure pairs, each stage's checkpoint chosen on held-back
  validation data);
- ``efrufn_cpu``: the chain trained from scratch with ``configs/<stage>.py:cpu`` (a reduced network
  and schedule for CPU training), where the fine-tune starts from.

``results/README.md`` has the commands, the training logs, the time they took and the scores. A
stage loads with :func:`fusionjax.stages.load_fusion_model`, serves as a teacher
(``--config.teacher_ckpt``) or a starting point (``--config.init_ckpt``), and its metadata holds
the whole lineage (:func:`fusionjax.checkpoints.stage_lineage`).

  from fusionjax import weights
  path = weights.shipped_checkpoint("ivf")           # .../fusionjax/weights/efrufn_w16_cpu/ivf
  model = fusionjax.stages.load_fusion_model(path)
"""

from __future__ import annotations

from pathlib import Path

from fusionjax import tasks

#: The folder of the shipped weights.
WEIGHTS_DIR = Path(__file__).resolve().parent

#: The weights ``fusionjax fuse`` and ``evaluate.py --ckpt shipped`` use by default.
DEFAULT = "efrufn_w16_cpu"


def available() -> list[str]:
  """Names of the shipped weight sets (folders holding at least one stage)."""
  return sorted(
    p.name
    for p in WEIGHTS_DIR.iterdir()
    if p.is_dir() and any((p / stage / "checkpoints").is_dir() for stage in tasks.STAGES)
  )


def shipped_checkpoint(task: str, name: str = DEFAULT) -> Path:
  """The shipped stage checkpoint that serves ``task``.

  Args:
    task: 'mfif', 'meif', 'ivf' or 'mif' (which uses the 'meif' stage).
    name: which weight set (see :func:`available`).

  Returns:
    The stage folder, loadable with :func:`fusionjax.stages.load_fusion_model`.

  Raises:
    ValueError: unknown task.
    FileNotFoundError: the weight set or stage is not installed.
  """
  stage = tasks.stage_of_task(task)
  path = WEIGHTS_DIR / name / stage
  if not (path / "checkpoints").is_dir():
    raise FileNotFoundError(
      f"The shipped weights {name!r} have no {stage!r} stage at {path} (installed sets: {available() or 'none'}). "
      "Reinstall fusionjax from a full checkout (`pip install -e .`), or pass --ckpt with your own stage workdir."
    )
  return path
