"""The train state pytree and the optimiser.

The train state is a plain dict, the layout that :class:`fusionjax.checkpoints.StageCheckpointer`
saves under ``state``:

- ``step``: int32 scalar, the number of completed steps (the next batch is ``source.batch(step)``).
- ``params``: the fusion network's parameters (the ``'params'`` collection).
- ``opt_state``: its optimiser state.
- ``rng``: base PRNG key; each step folds in its step number, so a resumed run draws the same keys.
- ``colornet_params`` and ``colornet_opt_state``: only in the multi-exposure stage, which trains
  ColorNet alongside the fusion network (paper Remark 1) with an optimiser of its own.

A teacher's parameters are never part of the state: they enter the step as a separate argument.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(
  optimizer_config: ml_collections.ConfigDict, num_steps: int
) -> optax.Schedule:
  """Linear warm-up to the peak rate, then cosine decay to ``end_lr_factor`` times the peak.

  Args:
    optimizer_config: ``learning_rate``, ``warmup_steps``, ``end_lr_factor``.
    num_steps: total steps of the stage; the decay ends there.

  Returns:
    An optax schedule (step -> learning rate).
  """
  peak = float(optimizer_config.learning_rate)
  warmup = min(int(optimizer_config.warmup_steps), max(num_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=peak,
    warmup_steps=warmup,
    decay_steps=max(num_steps, warmup + 1),
    end_value=peak * float(optimizer_config.end_lr_factor),
  )


def make_optimizer(
  optimizer_config: ml_collections.ConfigDict, num_steps: int
) -> optax.GradientTransformation:
  """Adam after global-norm gradient clipping (the paper cites both), on the schedule above.

  Args:
    optimizer_config: ``learning_rate``, ``warmup_steps``, ``end_lr_factor``, ``b1``, ``b2``,
      ``eps``, ``grad_clip_norm``.
    num_steps: total steps of the stage.

  Returns:
    An optax gradient transformation.
  """
  if float(optimizer_config.grad_clip_norm) <= 0:
    raise ValueError(
      f"config.optimizer.grad_clip_norm must be positive, got {optimizer_config.grad_clip_norm}."
    )
  if float(optimizer_config.learning_rate) <= 0:
    raise ValueError(
      f"config.optimizer.learning_rate must be positive, got {optimizer_config.learning_rate}."
    )
  return optax.chain(
    optax.clip_by_global_norm(float(optimizer_config.grad_clip_norm)),
    optax.adam(
      learning_rate_schedule(optimizer_config, num_steps),
      b1=float(optimizer_config.b1),
      b2=float(optimizer_config.b2),
      eps=float(optimizer_config.eps),
    ),
  )


def init_train_state(
  rng: jax.Array,
  *,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  patch_size: int,
  colornet: nn.Module | None = None,
  colornet_optimizer: optax.GradientTransformation | None = None,
) -> dict[str, Any]:
  """Initialises parameters and optimiser states.

  Args:
    rng: PRNG key; split into the network's, ColorNet's and the state's own key.
    model: the fusion network, called as ``model(y1, y2)``.
    optimizer: its optimiser.
    patch_size: side of the training crops; the parameters do not depend on it (the networks are
      fully convolutional or windowed), it only sets the shape of the initialisation input.
    colornet: ColorNet, called as ``colornet(crcb1, crcb2, fused_y)``, or ``None``.
    colornet_optimizer: its optimiser (required with ``colornet``).

  Returns:
    The train state dict described in the module docstring, with ``step`` 0.
  """
  model_rng, colornet_rng, state_rng = jax.random.split(rng, 3)
  # A mid-grey input: Flax initialisation depends only on shapes, and grey keeps the DEQ forward
  # run during init away from saturated values.
  y = jnp.full((1, patch_size, patch_size, 1), 0.5, jnp.float32)
  params = model.init(model_rng, y, y)["params"]
  state = {
    "step": jnp.zeros((), jnp.int32),
    "params": params,
    "opt_state": optimizer.init(params),
    "rng": state_rng,
  }
  if colornet is not None:
    if colornet_optimizer is None:
      raise ValueError("init_train_state: a ColorNet needs its own optimiser (colornet_optimizer).")
    crcb = jnp.full((1, patch_size, patch_size, 2), 0.5, jnp.float32)
    colornet_params = colornet.init(colornet_rng, crcb, crcb, y)["params"]
    state["colornet_params"] = colornet_params
    state["colornet_opt_state"] = colornet_optimizer.init(colornet_params)
  return state
