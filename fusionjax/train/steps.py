"""The pure train steps of the three stages (paper §3.1, eq. 1–8).

:func:`make_train_step` builds one function per stage:

- stage 1, MFIF: ``step(state, batch)``; ``L = 1 − SSIM(f(near, far), all_in_focus)`` (eq. 2). There
  is no teacher argument at all, not a dummy one.
- stage 2, MEIF: ``step(state, batch, teacher_params)``; ``L = 1 − SSIM(f, hdr) + λ·L_gt`` (eq. 1–3),
  plus ColorNet's L1 (eq. 8) on its own parameters.
- stage 3, IVF: ``step(state, batch, teacher_params)``; ``L = L_int + β1·L_text + β2·L_stru + λ·L_gt``
  (eq. 4–7, 1, 3).

Without a teacher (``config.use_teacher = False`` or ``λ = 0``) stages 2 and 3 use the two-argument
form and drop the L_gt term.

The teacher's parameters are an input: the teacher's forward runs outside the differentiated
function, its output is under ``stop_gradient``, and the teacher is in neither the optimiser state
nor the returned state, so it is never differentiated and never changed.

Each step computes the gradient of its device's share of the batch and averages it over the
device axis with ``lax.pmean`` (:mod:`fusionjax.train.parallel` maps it over devices). All batch
statistics are per-example means, so the average over equal shares equals the loss of the whole
batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fusionjax import losses
from fusionjax import tasks
from fusionjax.models import unfolding
from fusionjax.train.parallel import AXIS_NAME


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Weights of the loss terms (paper eq. 1 and 4).

  Attributes:
    gradient_transfer: λ, weight of L_gt; 0 disables the teacher term.
    texture: β1, weight of L_text (stage 3).
    structure: β2, weight of L_stru (stage 3).
    fixed_point: γ, weight of EFRUFN's fixed-point residual (not in the paper; see
      :class:`fusionjax.models.EFRUFN`); 0 leaves it out.
    jacobian: γ_J, weight of EFRUFN's Jacobian penalty ``||df/dz||_F^2 / dim z`` at the solution
      (Bai et al. 2021; not in the paper); 0 leaves it out.
  """

  gradient_transfer: float = 0.0
  texture: float = 0.0
  structure: float = 0.0
  fixed_point: float = 0.0
  jacobian: float = 0.0


def fusion_loss(
  task: str,
  fused: jax.Array,
  batch: Mapping[str, jax.Array],
  weights: LossWeights,
  teacher_fused: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Loss of the fusion network for one stage.

  Args:
    task: 'mfif', 'meif' or 'ivf'.
    fused: (B, H, W, 1) student fusion of ``batch['y1']`` and ``batch['y2']``.
    batch: ``y1``, ``y2`` and, for 'mfif'/'meif', ``reference`` (all (B, H, W, 1)).
    weights: λ, β1, β2.
    teacher_fused: (B, H, W, 1) frozen teacher's fusion of the same inputs, or ``None`` for no
      gradient-transfer term.

  Returns:
    ``(total, terms)``; ``terms`` holds every unweighted term by name.
  """
  if task in tasks.SUPERVISED_STAGES:
    terms = {"ssim_loss": losses.ssim_loss(fused, batch["reference"])}
    total = terms["ssim_loss"]
  elif task == "ivf":
    total, terms = losses.ivf_reconstruction_loss(
      fused, batch["y1"], batch["y2"], beta1=weights.texture, beta2=weights.structure
    )
  else:
    raise ValueError(f"Unknown task {task!r}; use one of {tasks.STAGES}.")
  if teacher_fused is not None:
    terms["gradient_transfer"] = losses.gradient_transfer_loss(fused, teacher_fused)
    total = total + weights.gradient_transfer * terms["gradient_transfer"]
  return total, dict(terms)


def solver_metrics(intermediates: Mapping[str, Any]) -> dict[str, jax.Array]:
  """DEQ solver statistics sown by EFRUFN, as scalars (empty for networks without a solver).

  Args:
    intermediates: the ``'intermediates'`` collection returned by ``apply(..., mutable=...)``.

  Returns:
    ``deq_steps`` (iterations), ``deq_rel_residual`` and ``deq_converged`` (fraction), averaged over
    every sown solve; ``{}`` when nothing was sown.
  """
  found = []

  def collect(tree):
    for key, value in tree.items():
      if key == "solver_stats":
        found.extend(value if isinstance(value, (tuple, list)) else (value,))
      elif isinstance(value, Mapping):
        collect(value)

  collect(intermediates)
  if not found:
    return {}
  mean = lambda name: jnp.mean(
    jnp.stack([jnp.mean(jnp.asarray(getattr(s, name), jnp.float32)) for s in found])
  )
  return {
    "deq_steps": mean("num_steps"),
    "deq_rel_residual": mean("rel_residual"),
    "deq_converged": mean("converged"),
  }


def _all_finite(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_train_step(
  task: str,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  weights: LossWeights,
  *,
  learning_rate: Callable[[jax.Array], jax.Array] | None = None,
  teacher_model: nn.Module | None = None,
  colornet: nn.Module | None = None,
  colornet_optimizer: optax.GradientTransformation | None = None,
  axis_name: str | None = AXIS_NAME,
) -> Callable:
  """Builds the pure train step of one stage.

  Args:
    task: 'mfif', 'meif' or 'ivf'.
    model: the student fusion network.
    optimizer: its optimiser.
    weights: loss weights; ``weights.gradient_transfer`` must be positive exactly when a teacher
      model is given.
    learning_rate: the schedule, only to report the current rate in the metrics.
    teacher_model: the frozen previous-stage network (its architecture comes from its checkpoint
      and may differ from the student's), or ``None`` for a step without the L_gt term.
    colornet: ColorNet to train alongside (stage 2), or ``None``.
    colornet_optimizer: ColorNet's optimiser.
    axis_name: device axis to average gradients and metrics over; ``None`` for a plain single-device
      (unmapped) step.

  Returns:
    ``step(state, batch) -> (state, metrics)`` without a teacher, and
    ``step(state, batch, teacher_params) -> (state, metrics)`` with one. ``metrics`` is a dict of
    float32 scalars, including ``all_finite`` (1.0 when the loss and every gradient are finite).
  """
  if task not in tasks.STAGES:
    raise ValueError(f"Unknown task {task!r}; use one of {tasks.STAGES}.")
  if task == "mfif" and teacher_model is not None:
    raise ValueError("Stage 1 (mfif) has no teacher: it is trained with the SSIM loss alone.")
  if (teacher_model is not None) != (weights.gradient_transfer > 0):
    raise ValueError(
      f"A teacher model needs λ > 0 and λ > 0 needs a teacher; got λ={weights.gradient_transfer} "
      f"and teacher={'yes' if teacher_model is not None else 'none'}."
    )
  if (colornet is None) != (colornet_optimizer is None):
    raise ValueError("Pass ColorNet and its optimiser together.")
  if colornet is not None and task != "meif":
    raise ValueError("ColorNet is trained in the multi-exposure stage (meif) only.")

  if weights.fixed_point > 0 and not isinstance(model, unfolding.EFRUFN):
    raise ValueError(
      f"The fixed-point residual term (γ={weights.fixed_point}) needs EFRUFN; "
      f"{type(model).__name__} has no fixed point. Set config.loss.fixed_point=0."
    )
  if weights.jacobian > 0 and not isinstance(model, unfolding.EFRUFN):
    raise ValueError(
      f"The Jacobian penalty term (γ_J={weights.jacobian}) needs EFRUFN; "
      f"{type(model).__name__} has no fixed-point map. Set config.loss.jacobian=0."
    )
  wants_losses = weights.fixed_point > 0 or weights.jacobian > 0
  collections = ["intermediates"] + ([unfolding.RESIDUAL_COLLECTION] if wants_losses else [])

  def pmean(tree):
    return jax.lax.pmean(tree, axis_name) if axis_name is not None else tree

  def step_impl(state, batch, teacher_params):
    y1, y2 = batch["y1"], batch["y2"]
    # Key for stochastic layers; folding in the step keeps a resumed run on the same keys.
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    rngs = {"dropout": step_rng}
    if weights.jacobian > 0:
      # The Jacobian penalty's probes: a stream of their own, derived from the step's key.
      rngs[unfolding.JACOBIAN_RNG] = jax.random.fold_in(step_rng, 1)
    teacher_fused = None
    if teacher_model is not None:
      teacher_fused = jax.lax.stop_gradient(teacher_model.apply({"params": teacher_params}, y1, y2))

    def loss_fn(params, colornet_params):
      fused, aux = model.apply({"params": params}, y1, y2, rngs=rngs, mutable=collections)
      fusion_total, terms = fusion_loss(task, fused, batch, weights, teacher_fused)
      extra = solver_metrics(aux.get("intermediates", {}))
      if weights.fixed_point > 0:
        (terms["fixed_point"],) = aux[unfolding.RESIDUAL_COLLECTION]["fixed_point_residual"]
        fusion_total = fusion_total + weights.fixed_point * terms["fixed_point"]
      if weights.jacobian > 0:
        (terms["jacobian"],) = aux[unfolding.RESIDUAL_COLLECTION]["jacobian_penalty"]
        fusion_total = fusion_total + weights.jacobian * terms["jacobian"]
      total = fusion_total
      if colornet is not None:
        # ColorNet corrects the chroma of the fused image; its L1 (eq. 8) trains ColorNet only, so the
        # fused Y enters as a constant and the fusion network's loss stays eq. (1).
        crcb = colornet.apply(
          {"params": colornet_params}, batch["crcb1"], batch["crcb2"], jax.lax.stop_gradient(fused)
        )
        terms["color"] = losses.color_loss(crcb, batch["reference_crcb"])
        total = total + terms["color"]
      return total, (fusion_total, terms, extra)

    colornet_params = state.get("colornet_params")
    (total, (fusion_total, terms, extra)), (grads, colornet_grads) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True
    )(state["params"], colornet_params)
    grads, colornet_grads = pmean((grads, colornet_grads))

    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    new_state = dict(
      state,
      step=state["step"] + 1,
      params=optax.apply_updates(state["params"], updates),
      opt_state=opt_state,
    )
    finite = jnp.isfinite(total) & _all_finite(grads)
    # ``loss`` is the fusion network's objective (eq. 1); ColorNet's L1 is reported as ``color``.
    metrics = {"loss": fusion_total, **terms, **extra, "grad_norm": optax.tree.norm(grads)}
    if colornet is not None:
      color_updates, color_opt_state = colornet_optimizer.update(
        colornet_grads, state["colornet_opt_state"], colornet_params
      )
      new_state["colornet_params"] = optax.apply_updates(colornet_params, color_updates)
      new_state["colornet_opt_state"] = color_opt_state
      finite = finite & _all_finite(colornet_grads)
    if learning_rate is not None:
      metrics["learning_rate"] = learning_rate(state["step"])
    metrics = pmean({k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()})
    # Finite on every device: a min over the device axis (pmean of 0/1 would hide a single bad shard).
    finite = finite.astype(jnp.float32)
    metrics["all_finite"] = jax.lax.pmin(finite, axis_name) if axis_name is not None else finite
    return new_state, metrics

  if teacher_model is None:

    def train_step(state, batch):
      """One optimisation step without a teacher term (see :func:`make_train_step`)."""
      return step_impl(state, batch, None)
  else:

    def train_step(state, batch, teacher_params):
      """One optimisation step with the frozen teacher's parameters as input (see :func:`make_train_step`)."""
      return step_impl(state, batch, teacher_params)

  return train_step
