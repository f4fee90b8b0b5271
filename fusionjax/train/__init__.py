"""Training of the sequential gradient-transfer chain MFIF -> MEIF -> IVF (paper §3.1).

- :func:`train_and_evaluate`: one stage, end to end (``train.py`` calls it).
- :func:`make_train_step`: the pure, device-parallel train step of a stage.
- :func:`init_train_state`, :func:`make_optimizer`: the train state dict and Adam with clipping.
- :class:`DataParallel` (``jax.pmap``) and :class:`MeshDataParallel` (``jax.jit`` over a device
  mesh): the data-parallel seam, chosen by :func:`make_data_parallel` (``--config.parallel``).
- :mod:`fusionjax.train.distributed`: multi-process runs (``jax.distributed.initialize``).

The names are imported on first use, so that ``fusionjax.train.distributed`` (and the configs,
which read ``fusionjax.train.parallel``) can be imported before JAX starts its devices.
"""

import importlib

# Public name -> the submodule that defines it.
_EXPORTS = {
  "train_and_evaluate": "loop",
  "AXIS_NAME": "parallel",
  "DataParallel": "parallel",
  "MeshDataParallel": "parallel",
  "make_data_parallel": "parallel",
  "init_train_state": "state",
  "learning_rate_schedule": "state",
  "make_optimizer": "state",
  "LossWeights": "steps",
  "fusion_loss": "steps",
  "make_train_step": "steps",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(f"fusionjax.train.{_EXPORTS[name]}"), name)
  raise AttributeError(f"module 'fusionjax.train' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
