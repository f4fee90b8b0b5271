"""The networks, optimisers and compiled functions of one stage configuration (:func:`build_programs`).

Built once per configuration in a process and cached, so that calling ``train_and_evaluate`` again
with the same networks and optimiser (resuming in a notebook, tests) reuses the compiled functions.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping

import jax
import ml_collections

from fusionjax import models
from fusionjax.train import parallel
from fusionjax.train import state as train_state
from fusionjax.train import steps as train_steps
from fusionjax.train.teacher import Teacher


@dataclasses.dataclass(frozen=True)
class Programs:
  """The networks, optimisers and compiled functions of one stage configuration.

  Attributes:
    model: the student network.
    colornet: ColorNet (MEIF) or None.
    optimizer: the student's optimiser; ``colornet_optimizer`` ColorNet's (or None).
    schedule: the learning-rate schedule.
    init: jitted ``rng -> train state``.
    step: the device-parallel train step (``DataParallel.compile_step``).
    fuse: jitted ``(params, y1, y2) -> fused``; ``color``: jitted ColorNet apply (or None).
    data_parallel: the :class:`parallel.DataParallel` or :class:`parallel.MeshDataParallel` the step runs on.
  """

  model: Any
  colornet: Any
  optimizer: Any
  colornet_optimizer: Any
  schedule: Any
  init: Any
  step: Any
  fuse: Any
  color: Any
  data_parallel: Any


# Programs of the last few stage configurations built in this process, keyed on :func:`_hashable`
# of their specification.
_PROGRAMS_CACHE: collections.OrderedDict[Any, Programs] = collections.OrderedDict()
_PROGRAMS_CACHE_SIZE = 4


def _hashable(tree: Any) -> Any:
  """A hashable copy of a config tree: mappings as sorted (key, value) tuples, lists as tuples."""
  if isinstance(tree, Mapping):
    return tuple(sorted((key, _hashable(value)) for key, value in tree.items()))
  if isinstance(tree, (list, tuple)):
    return tuple(_hashable(value) for value in tree)
  return tree


def _make_programs(spec: dict, num_devices: int | None, mode: str) -> Programs:
  task, num_steps, patch = spec["task"], spec["num_steps"], spec["patch_size"]
  optimizer_config = ml_collections.ConfigDict(spec["optimizer"])
  model = models.create_model(spec["model"])
  colornet = models.ColorNet(**spec["colornet"]) if spec["colornet"] is not None else None
  optimizer = train_state.make_optimizer(optimizer_config, num_steps)
  colornet_optimizer = train_state.make_optimizer(optimizer_config, num_steps) if colornet else None
  schedule = train_state.learning_rate_schedule(optimizer_config, num_steps)
  teacher_model = (
    models.create_model(spec["teacher_model"]) if spec["teacher_model"] is not None else None
  )
  init = jax.jit(
    lambda rng: train_state.init_train_state(
      rng,
      model=model,
      optimizer=optimizer,
      patch_size=patch,
      colornet=colornet,
      colornet_optimizer=colornet_optimizer,
    )
  )
  step_fn = train_steps.make_train_step(
    task,
    model,
    optimizer,
    train_steps.LossWeights(**spec["weights"]),
    learning_rate=schedule,
    teacher_model=teacher_model,
    colornet=colornet,
    colornet_optimizer=colornet_optimizer,
    axis_name=parallel.AXIS_NAME,
  )
  dp = parallel.make_data_parallel(mode, num_devices)
  fuse = jax.jit(lambda params, y1, y2: model.apply({"params": params}, y1, y2))
  color_fn = (
    jax.jit(lambda params, c1, c2, y: colornet.apply({"params": params}, c1, c2, y))
    if colornet
    else None
  )
  return Programs(
    model=model,
    colornet=colornet,
    optimizer=optimizer,
    colornet_optimizer=colornet_optimizer,
    schedule=schedule,
    init=init,
    step=dp.compile_step(step_fn),
    fuse=fuse,
    color=color_fn,
    data_parallel=dp,
  )


def build_programs(config: ml_collections.ConfigDict, teacher: Teacher | None) -> Programs:
  """The networks and compiled functions of a stage (cached per configuration in this process).

  Args:
    config: the stage config.
    teacher: the resolved teacher (its recorded model config builds the teacher network), or None.

  Returns:
    A :class:`Programs`.
  """
  colornet_kwargs = None
  if config.task == "meif" and config.get("train_colornet", False):
    colornet_kwargs = config.colornet.to_dict()
  spec = {
    "task": config.task,
    "model": config.model.to_dict(),
    "colornet": colornet_kwargs,
    "optimizer": config.optimizer.to_dict(),
    "num_steps": int(config.num_steps),
    "patch_size": int(config.data.patch_size),
    "weights": {
      "gradient_transfer": float(config.loss.lambda_gt) if teacher is not None else 0.0,
      "texture": float(config.loss.beta1),
      "structure": float(config.loss.beta2),
      "fixed_point": fixed_point_weight(config),
      "jacobian": jacobian_weight(config),
    },
    "teacher_model": teacher.metadata["model"] if teacher is not None else None,
  }
  num_devices, mode = config.get("num_devices"), config.get("parallel", parallel.DEFAULT_MODE)
  key = (_hashable(spec), num_devices, mode)
  programs = _PROGRAMS_CACHE.get(key)
  if programs is None:
    programs = _PROGRAMS_CACHE[key] = _make_programs(spec, num_devices, mode)
    while len(_PROGRAMS_CACHE) > _PROGRAMS_CACHE_SIZE:
      _PROGRAMS_CACHE.popitem(last=False)  # The least recently used.
  _PROGRAMS_CACHE.move_to_end(key)
  return programs


def fixed_point_weight(config) -> float:
  """γ of EFRUFN's fixed-point residual term (``config.loss.fixed_point``); 0 for FRUFN, which has no
  fixed point."""
  if str(config.model.get("name", "efrufn")).lower() != "efrufn":
    return 0.0
  return float(config.loss.get("fixed_point", 0.0))


def jacobian_weight(config) -> float:
  """γ_J of EFRUFN's Jacobian penalty (``config.loss.jacobian``, 0 when absent).

  Raises:
    ValueError: for γ_J > 0 with a network other than EFRUFN (FRUFN has no fixed-point map).
  """
  weight = float(config.loss.get("jacobian", 0.0))
  name = str(config.model.get("name", "efrufn")).lower()
  if weight > 0 and name != "efrufn":
    raise ValueError(
      f"config.loss.jacobian={weight} needs EFRUFN (the Jacobian penalty is taken at its "
      f"fixed point); model {name!r} has none. Set --config.loss.jacobian=0."
    )
  return weight
