"""One train step of each stage on tiny crops (fusionjax.train.steps), plus optimiser and loss wiring.

Tiny networks and XLA's lowest CPU optimisation level keep compilation short; numerics are the same.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fusionjax import losses, models
from fusionjax.train import state as train_state
from fusionjax.train import steps as train_steps

# Compile-time option only: the lowest backend optimisation level compiles these graphs several
# times faster on CPU and computes the same values.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
TINY = dict(width=4, num_heads=1, swin_depth=1, pool_factors=(1,), cpb_hidden=8)
TINY_EFRUFN = dict(name="efrufn", max_iter=2, solver="fixed_point", **TINY)
TINY_FRUFN = dict(name="frufn", num_units=1, **TINY)
# Non-square, odd-sized crops: the step must work on any H x W.
SHAPE = (2, 15, 22, 1)


def _optimizer_config(**overrides):
  config = ml_collections.ConfigDict(
    dict(
      learning_rate=1e-3,
      warmup_steps=0,
      end_lr_factor=0.1,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      grad_clip_norm=1.0,
    )
  )
  config.update(overrides)
  return config


@functools.lru_cache(maxsize=None)
def _model_and_params(name: str):
  """A tiny model and freshly initialised parameters (cached across tests: init compiles)."""
  config = TINY_EFRUFN if name == "efrufn" else TINY_FRUFN
  model = models.create_model(config)
  y = jnp.full((1,) + SHAPE[1:], 0.5, jnp.float32)
  params = jax.jit(model.init, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(1), y, y)["params"]
  return model, jax.device_get(params)


def _state(name: str, optimizer, colornet=None, colornet_optimizer=None):
  model, params = _model_and_params(name)
  state = {
    "step": jnp.zeros((), jnp.int32),
    "params": params,
    "opt_state": optimizer.init(params),
    "rng": jax.random.PRNGKey(0),
  }
  if colornet is not None:
    crcb = jnp.full(SHAPE[:3] + (2,), 0.5, jnp.float32)
    y = jnp.full(SHAPE, 0.5, jnp.float32)
    state["colornet_params"] = jax.device_get(
      colornet.init(jax.random.PRNGKey(2), crcb, crcb, y)["params"]
    )
    state["colornet_opt_state"] = colornet_optimizer.init(state["colornet_params"])
  return model, state


def _batch(seed: int, task: str) -> dict:
  print(f"seed={seed}")
  rng = np.random.default_rng(seed)
  batch = {"y1": rng.random(SHAPE, np.float32), "y2": rng.random(SHAPE, np.float32)}
  if task != "ivf":
    batch["reference"] = rng.random(SHAPE, np.float32)
  if task == "meif":
    for key in ("crcb1", "crcb2", "reference_crcb"):
      batch[key] = rng.uniform(0.3, 0.7, SHAPE[:3] + (2,)).astype(np.float32)
  return batch


def _copy(tree):
  return jax.tree.map(lambda x: np.array(x, copy=True), jax.device_get(tree))


def _trees_equal(a, b) -> bool:
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
    np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b)
  )


def _changed_fraction(before, after) -> float:
  changed = [
    not np.array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after))
  ]
  return float(np.mean(changed))


@functools.lru_cache(maxsize=None)
def _mfif_step():
  optimizer = train_state.make_optimizer(_optimizer_config(), num_steps=10)
  model, state = _state("efrufn", optimizer)
  step = train_steps.make_train_step(
    "mfif", model, optimizer, train_steps.LossWeights(), axis_name=None
  )
  return jax.jit(step, compiler_options=FAST_COMPILE), state


@pytest.mark.slow
def test_mfif_step_updates_params_and_reports_ssim_and_solver_stats():
  step, state = _mfif_step()
  before = _copy(state)
  batch = _batch(10, "mfif")
  new_state, metrics = step(state, batch)
  metrics = jax.device_get(metrics)
  assert np.isfinite(metrics["loss"]) and 0.0 < metrics["loss"] < 2.0
  assert metrics["loss"] == metrics["ssim_loss"]
  assert (
    "gradient_transfer" not in metrics and "color" not in metrics and "fixed_point" not in metrics
  )
  assert metrics["all_finite"] == 1.0
  assert 1.0 <= metrics["deq_steps"] <= TINY_EFRUFN["max_iter"]
  assert int(new_state["step"]) == 1
  # Adam moves every parameter that receives a gradient; nearly all do.
  assert _changed_fraction(before["params"], new_state["params"]) > 0.9
  assert _trees_equal(before, _copy(state))  # the input state is not modified in place


@pytest.mark.slow
def test_mfif_step_flags_non_finite_inputs():
  step, state = _mfif_step()
  batch = _batch(11, "mfif")
  batch["y1"][0, 3, 4, 0] = np.nan
  _, metrics = step(state, batch)
  assert float(metrics["all_finite"]) == 0.0


@pytest.mark.slow
def test_meif_step_with_teacher_of_another_architecture_and_colornet():
  optimizer = train_state.make_optimizer(_optimizer_config(), num_steps=10)
  colornet = models.ColorNet(features=4, num_blocks=1)
  colornet_optimizer = train_state.make_optimizer(_optimizer_config(), num_steps=10)
  model, state = _state("efrufn", optimizer, colornet, colornet_optimizer)
  teacher_model, teacher_params = _model_and_params("frufn")
  teacher_before = _copy(teacher_params)
  step = train_steps.make_train_step(
    "meif",
    model,
    optimizer,
    train_steps.LossWeights(gradient_transfer=2.0, fixed_point=0.5),
    teacher_model=teacher_model,
    colornet=colornet,
    colornet_optimizer=colornet_optimizer,
    axis_name=None,
  )
  before = _copy(state)
  new_state, metrics = jax.jit(step, compiler_options=FAST_COMPILE)(
    state, _batch(12, "meif"), teacher_params
  )
  metrics = jax.device_get(metrics)
  assert all(np.isfinite(v) for v in metrics.values())
  assert metrics["gradient_transfer"] >= 0.0 and metrics["color"] > 0.0
  # EFRUFN's fixed-point residual after 2 plain iterations: positive, and weighted into the loss.
  assert 0.0 < metrics["fixed_point"] < 10.0
  np.testing.assert_allclose(
    metrics["loss"],
    metrics["ssim_loss"] + 2.0 * metrics["gradient_transfer"] + 0.5 * metrics["fixed_point"],
    rtol=1e-6,
  )
  assert _changed_fraction(before["params"], new_state["params"]) > 0.9
  assert _changed_fraction(before["colornet_params"], new_state["colornet_params"]) > 0.9
  # The teacher is an input only: bit-identical afterwards and absent from the returned state.
  assert _trees_equal(teacher_before, _copy(teacher_params))
  assert set(new_state) == set(state)


@pytest.mark.slow
def test_ivf_step_with_teacher_combines_eq4_terms():
  optimizer = train_state.make_optimizer(_optimizer_config(), num_steps=10)
  model, state = _state("frufn", optimizer)
  teacher_model, teacher_params = _model_and_params("efrufn")
  teacher_before = _copy(teacher_params)
  weights = train_steps.LossWeights(gradient_transfer=0.5, texture=2.0, structure=0.25)
  step = train_steps.make_train_step(
    "ivf", model, optimizer, weights, teacher_model=teacher_model, axis_name=None
  )
  before = _copy(state)
  new_state, metrics = jax.jit(step, compiler_options=FAST_COMPILE)(
    state, _batch(13, "ivf"), teacher_params
  )
  m = jax.device_get(metrics)
  expected = (
    m["intensity"] + 2.0 * m["texture"] + 0.25 * m["structure"] + 0.5 * m["gradient_transfer"]
  )
  np.testing.assert_allclose(m["loss"], expected, rtol=1e-6)
  assert m["all_finite"] == 1.0 and "deq_steps" not in m  # FRUFN sows no solver statistics
  assert _changed_fraction(before["params"], new_state["params"]) > 0.9
  assert _trees_equal(teacher_before, _copy(teacher_params))


def test_make_train_step_rejects_inconsistent_teacher_settings():
  optimizer = train_state.make_optimizer(_optimizer_config(), num_steps=10)
  model = models.create_model(TINY_FRUFN)
  with pytest.raises(ValueError, match="no teacher"):
    train_steps.make_train_step(
      "mfif", model, optimizer, train_steps.LossWeights(gradient_transfer=1.0), teacher_model=model
    )
  with pytest.raises(ValueError, match="λ > 0 needs a teacher"):
    train_steps.make_train_step(
      "ivf", model, optimizer, train_steps.LossWeights(gradient_transfer=1.0)
    )
  with pytest.raises(ValueError, match="λ > 0"):
    train_steps.make_train_step(
      "ivf", model, optimizer, train_steps.LossWeights(), teacher_model=model
    )
  with pytest.raises(ValueError, match="meif"):
    train_steps.make_train_step(
      "ivf",
      model,
      optimizer,
      train_steps.LossWeights(),
      colornet=models.ColorNet(),
      colornet_optimizer=optimizer,
    )
  with pytest.raises(ValueError, match="Unknown task"):
    train_steps.make_train_step("mif", model, optimizer, train_steps.LossWeights())
  with pytest.raises(ValueError, match="needs EFRUFN"):
    train_steps.make_train_step("mfif", model, optimizer, train_steps.LossWeights(fixed_point=1.0))


def test_relative_residual_of_the_fixed_point_term():
  from fusionjax.models import unfolding

  z = (jnp.ones((2, 3, 4, 5)), jnp.full((2, 3, 4, 1), 0.5))
  assert float(unfolding.relative_residual(z, z)) == 0.0
  doubled = jax.tree.map(lambda a: 2 * a, z)
  # ||z||² per image: 60 + 12 * 0.25 = 63, plus 1e-4 per element (72 elements).
  np.testing.assert_allclose(unfolding.relative_residual(doubled, z), 63 / (63 + 72e-4), rtol=1e-6)
  zeros = jax.tree.map(jnp.zeros_like, z)
  assert np.isfinite(float(unfolding.relative_residual(z, zeros)))


def test_fusion_loss_per_stage_on_constructed_inputs():
  rng = np.random.default_rng(14)
  y = rng.random(SHAPE).astype(np.float32)
  total, terms = train_steps.fusion_loss("mfif", y, {"reference": y}, train_steps.LossWeights())
  assert abs(float(total)) < 1e-5 and set(terms) == {"ssim_loss"}
  vis, ir = rng.random(SHAPE).astype(np.float32), rng.random(SHAPE).astype(np.float32)
  fused = np.maximum(vis, ir)
  weights = train_steps.LossWeights(gradient_transfer=3.0, texture=1.0, structure=0.5)
  total, terms = train_steps.fusion_loss(
    "ivf", fused, {"y1": vis, "y2": ir}, weights, teacher_fused=fused
  )
  assert float(terms["intensity"]) == 0.0 and float(terms["gradient_transfer"]) == 0.0
  expected = float(losses.texture_loss(fused, vis, ir)) + 0.5 * float(
    losses.structure_loss(fused, vis, ir)
  )
  assert float(total) == pytest.approx(expected, rel=1e-6)


def test_learning_rate_schedule_warms_up_then_decays():
  config = _optimizer_config(learning_rate=2e-4, warmup_steps=10, end_lr_factor=0.01)
  schedule = train_state.learning_rate_schedule(config, num_steps=100)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(1e-4, rel=1e-5)
  assert float(schedule(10)) == pytest.approx(2e-4, rel=1e-5)
  values = [float(schedule(s)) for s in range(10, 101)]
  assert all(a >= b for a, b in zip(values, values[1:]))
  assert values[-1] == pytest.approx(2e-6, rel=1e-4)


def test_optimizer_clips_the_global_norm_before_adam():
  import optax

  config = _optimizer_config(grad_clip_norm=0.5, learning_rate=1e-2)
  optimizer = train_state.make_optimizer(config, num_steps=10)
  reference = optax.adam(train_state.learning_rate_schedule(config, 10), b1=0.9, b2=0.999, eps=1e-8)
  params = {"w": jnp.zeros(4)}
  # Norm 20 is clipped to 0.5 (0.25 per entry); norm 0.2 passes unchanged. Adam's moments see the
  # clipped values, so the second update differs from Adam on the raw gradients.
  grads = [{"w": jnp.full(4, 10.0)}, {"w": jnp.full(4, 0.1)}]
  clipped = [{"w": jnp.full(4, 0.25)}, {"w": jnp.full(4, 0.1)}]
  state, ref_state = optimizer.init(params), reference.init(params)
  for g, c in zip(grads, clipped):
    update, state = optimizer.update(g, state, params)
    ref_update, ref_state = reference.update(c, ref_state, params)
    np.testing.assert_allclose(update["w"], ref_update["w"], rtol=1e-6)
  raw_state = reference.init(params)
  for g in grads:
    raw_update, raw_state = reference.update(g, raw_state, params)
  assert not np.allclose(update["w"], raw_update["w"], rtol=1e-3)
  with pytest.raises(ValueError, match="grad_clip_norm"):
    train_state.make_optimizer(_optimizer_config(grad_clip_norm=0.0), num_steps=10)
  with pytest.raises(ValueError, match="learning_rate"):
    train_state.make_optimizer(_optimizer_config(learning_rate=-1.0), num_steps=10)
