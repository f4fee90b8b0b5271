"""Scores of a stage on its validation split: held-back training data, never a test set.

The split is what ``config.data.holdout_every = k`` keeps out of training (every k-th photograph,
RoadScene training pair and SICE training scene; see :mod:`fusionjax.data.config`). Validation
examples are built by the training pipeline itself from those held-back items, with a fixed seed,
no augmentation and larger crops, so every checkpoint of a run (and any other stage of the same
task) is scored on the same pixels::

  batch = validation.validation_batch("mfif", config.data, holdout_every=8)
  rows = validation.score_checkpoints("runs/mfif", batch)   # one row per saved step

Scores (``fusionjax.metrics``, clean convention, on the fused luma in levels 0..255, mean over
examples): with a reference (MFIF, MEIF), ``SSIM`` and ``PSNR`` against it; without (IVF),
``Qabf``, ``VIF``, ``SD``, ``EN`` and the fusion-form ``SSIM`` against the sources.
:data:`PRIMARY` names the score a selection ranks by.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from fusionjax import tasks

#: Metrics computed per task (the task's training data has references for MFIF and MEIF only).
METRICS = {
  "mfif": ("SSIM", "PSNR"),
  "meif": ("SSIM", "PSNR"),
  "ivf": ("Qabf", "VIF", "SD", "EN", "SSIM"),
}

#: The score a selection ranks by (higher is better for every one of them).
PRIMARY = {"mfif": "SSIM", "meif": "SSIM", "ivf": "Qabf"}

#: Defaults of the validation examples: larger crops than training, a seed of their own.
DEFAULT_NUM_EXAMPLES = 32
DEFAULT_PATCH_SIZE = 192
DEFAULT_SEED = 20261202


def validation_batch(
  task: str,
  data_config: Mapping,
  *,
  holdout_every: int | None = None,
  num_examples: int = DEFAULT_NUM_EXAMPLES,
  patch_size: int = DEFAULT_PATCH_SIZE,
  seed: int = DEFAULT_SEED,
) -> dict[str, np.ndarray]:
  """The fixed validation examples of a stage, as one batch of arrays.

  Args:
    task: 'mfif', 'meif' or 'ivf'.
    data_config: the run's ``config.data`` (a ConfigDict or dict): its data root, image sets and
      synthesis settings are used.
    holdout_every: overrides ``data_config.holdout_every`` (it must be > 0 one way or the other).
    num_examples: examples in the batch (crops of the held-back items, in turn).
    patch_size: crop side.
    seed: seed of the crops and of the synthesis.

  Returns:
    The batch (``y1``, ``y2`` and, for MFIF/MEIF, ``reference``), each (N, P, P, 1) in [0, 1].

  Raises:
    ValueError: nothing is held back (``holdout_every`` is 0).
  """
  from fusionjax.data import make_training_source  # Deferred: the pipeline imports scipy.

  if hasattr(data_config, "to_dict"):
    data_config = data_config.to_dict()
  config = dict(data_config)
  if holdout_every is not None:
    config["holdout_every"] = holdout_every
  if not config.get("holdout_every"):
    raise ValueError(
      "No validation split: set config.data.holdout_every (e.g. 8) for training and validation "
      "alike, so the scored items were held back from training."
    )
  config.update(
    holdout=True,
    augment=False,
    batch_size=num_examples,
    patch_size=patch_size,
    seed=seed,
    max_images=None,
  )
  source = make_training_source(task, config)
  try:
    batch = source.batch(0)
  finally:
    source.close()
  keys = ("y1", "y2", "reference") if task in tasks.SUPERVISED_STAGES else ("y1", "y2")
  return {key: np.asarray(batch[key], np.float32) for key in keys}


def fuse_batch(fusion_model, batch: Mapping[str, np.ndarray], chunk: int = 8) -> np.ndarray:
  """The network's fused luma of every example, as inference computes it (border included).

  Args:
    fusion_model: a :class:`fusionjax.stages.FusionModel`.
    batch: ``y1`` and ``y2``, (N, H, W, 1) in [0, 1].
    chunk: examples per network call.

  Returns:
    (N, H, W, 1) float32 in [0, 1].
  """
  from fusionjax import inference, stages  # Deferred: building the batch needs no JAX.

  # The jitted network that inference keeps per architecture: every checkpoint of a run reuses it.
  network = inference._compiled(fusion_model).network  # pylint: disable=protected-access
  variables = stages.as_variables(fusion_model.params)
  fused = [
    np.asarray(network(variables, batch["y1"][i : i + chunk], batch["y2"][i : i + chunk])[0])
    for i in range(0, len(batch["y1"]), chunk)
  ]
  return np.clip(np.concatenate(fused), 0.0, 1.0)


def score(task: str, fused: np.ndarray, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Mean validation scores (:data:`METRICS` of ``task``) of fused examples.

  Args:
    task: 'mfif', 'meif' or 'ivf'.
    fused: (N, H, W, 1) in [0, 1], e.g. from :func:`fuse_batch`.
    batch: the validation batch the examples were fused from.

  Returns:
    Metric name -> mean over the examples where it is defined.
  """
  from fusionjax import metrics  # Deferred: scipy.

  names = METRICS[task]
  levels = lambda a: np.asarray(a[..., 0], np.float64) * 255.0  # noqa: E731
  values: dict[str, list[float]] = {name: [] for name in names}
  for i in range(len(fused)):
    reference = levels(batch["reference"][i]) if "reference" in batch else None
    result = metrics.compute_metrics(
      levels(fused[i]), [levels(batch["y1"][i]), levels(batch["y2"][i])], reference, names=names
    )
    for name, value in result.items():
      if value.value is not None:
        values[name].append(float(value.value))
  return {name: float(np.mean(v)) if v else float("nan") for name, v in values.items()}


def score_model(fusion_model, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
  """:func:`score` of one stage on a validation batch of its task."""
  return score(fusion_model.task, fuse_batch(fusion_model, batch), batch)


def score_checkpoints(
  workdir: str | os.PathLike, batch: Mapping[str, np.ndarray], steps: Sequence[int] | None = None
) -> list[dict]:
  """Scores every saved checkpoint of a training run (or the given steps) on a validation batch.

  Args:
    workdir: the run's ``--workdir``.
    batch: from :func:`validation_batch` for the run's task.
    steps: the steps to score; default every committed checkpoint.

  Returns:
    One dict per step: ``{"step": s, <metric>: value, ...}``, in step order.
  """
  from fusionjax import checkpoints, stages

  if steps is None:
    checkpointer = checkpoints.StageCheckpointer(workdir, create=False)
    try:
      steps = checkpointer.committed_steps()
    finally:
      checkpointer.close()
  rows = []
  for step in sorted(steps):
    model = stages.load_fusion_model(workdir, step=step)
    rows.append({"step": int(step), **score_model(model, batch)})
  return rows


def best_row(task: str, rows: Sequence[Mapping]) -> Mapping:
  """The row with the highest :data:`PRIMARY` score of ``task`` (the earliest on ties)."""
  key = PRIMARY[task]
  return max(rows, key=lambda row: (row[key], -row.get("step", 0)))
