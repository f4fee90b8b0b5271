"""EFRUFN's solver options from the model config and its Jacobian-penalty loss term.

Covers ``keep_best``, ``solver='broyden'`` (``broyden_memory``) and ``implicit_solver`` in
``fusionjax.models.config``, the ``loss.jacobian`` term of the train step (weighting, gradient,
rng, rejection for FRUFN) and that checkpoints recorded before these fields existed still load.
Tiny networks on 16 x 24 crops and XLA's lowest CPU optimisation level keep compilation short.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fusionjax import checkpoints, deq, models
from fusionjax.models import unfolding
from fusionjax.train import loop
from fusionjax.train import state as train_state
from fusionjax.train import steps as train_steps

FAST_COMPILE = {"xla_backend_optimization_level": 0}
TINY = dict(width=4, num_heads=1, swin_depth=1, pool_factors=(1,), cpb_hidden=8)
TINY_EFRUFN = dict(name="efrufn", max_iter=2, solver="fixed_point", **TINY)
SHAPE = (2, 16, 24, 1)
SHIPPED = Path(__file__).resolve().parents[1] / "fusionjax" / "weights" / "efrufn_cpu"
NEW_FIELDS = ("keep_best", "broyden_memory", "implicit_solver")


def _optimizer():
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
  return train_state.make_optimizer(config, num_steps=10)


def _batch(seed: int) -> dict:
  print(f"seed={seed}")
  rng = np.random.default_rng(seed)
  return {key: rng.random(SHAPE, np.float32) for key in ("y1", "y2", "reference")}


@functools.lru_cache(maxsize=None)
def _model_and_params(**overrides):
  model = models.create_model(dict(TINY_EFRUFN, **overrides))
  y = jnp.full((1,) + SHAPE[1:], 0.5, jnp.float32)
  params = jax.jit(model.init, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(1), y, y)["params"]
  return model, jax.device_get(params)


@functools.lru_cache(maxsize=None)
def _step(fixed_point: float, jacobian: float):
  model, params = _model_and_params()
  optimizer = _optimizer()
  state = {
    "step": jnp.zeros((), jnp.int32),
    "params": params,
    "opt_state": optimizer.init(params),
    "rng": jax.random.PRNGKey(0),
  }
  step = train_steps.make_train_step(
    "mfif",
    model,
    optimizer,
    train_steps.LossWeights(fixed_point=fixed_point, jacobian=jacobian),
    axis_name=None,
  )
  return jax.jit(step, compiler_options=FAST_COMPILE), state


# --- config plumbing ---------------------------------------------------------------------------


def test_keep_best_broyden_and_implicit_solver_reach_the_deq_options():
  for name, cls in (
    ("anderson", deq.Anderson),
    ("broyden", deq.Broyden),
    ("fixed_point", deq.FixedPointIteration),
  ):
    solver, _ = models.solver_options(dict(solver=name, max_iter=4, tol=1e-4))
    assert isinstance(solver, cls) and solver.keep_best is True
    assert (solver.max_iter, solver.tol) == (4, 1e-4)
    solver, _ = models.solver_options(dict(solver=name, keep_best=False))
    assert solver.keep_best is False
  solver, _ = models.solver_options(dict(solver="broyden", broyden_memory=3))
  assert solver == deq.Broyden(max_iter=5, tol=1e-3, memory=3, keep_best=True)
  assert models.solver_options(dict(solver="broyden"))[0].memory == 5  # the documented default
  _, backward = models.solver_options(dict(backward="implicit", implicit_solver="gmres"))
  assert backward == deq.Implicit(max_iter=30, tol=1e-4, solver="gmres")
  _, backward = models.solver_options(dict(backward="implicit"))
  assert backward.solver == "iterate"
  model = models.create_model(dict(solver="broyden", broyden_memory=2, keep_best=False))
  assert model.solver == deq.Broyden(max_iter=5, tol=1e-3, memory=2, keep_best=False)
  for bad, message in (
    (dict(implicit_solver="lbfgs"), "implicit_solver"),
    (dict(solver="broyden", broyden_memory=0), "broyden_memory"),
    (dict(solver="newton"), "solver"),
  ):
    with pytest.raises(ValueError, match=message):
      models.solver_options(bad)
  with pytest.raises(TypeError, match="keep_best"):  # ConfigDict's type check of the bool field
    models.solver_options(dict(keep_best="yes"))


@pytest.mark.slow
def test_efrufn_solves_with_broyden():
  model, params = _model_and_params(solver="broyden", max_iter=3, broyden_memory=2, tol=0.0)
  batch = _batch(20)
  apply = jax.jit(
    functools.partial(model.apply, mutable=["intermediates"]), compiler_options=FAST_COMPILE
  )
  fused, aux = apply({"params": params}, batch["y1"], batch["y2"])
  assert fused.shape == SHAPE and np.all(np.isfinite(fused))
  assert np.all((np.asarray(fused) > 0) & (np.asarray(fused) < 1))
  (stats,) = aux["intermediates"]["solver_stats"]
  # tol=0: every image runs the full budget (more than the memory: one restart of the estimate).
  np.testing.assert_array_equal(stats.num_steps, [3, 3])
  assert np.all(np.isfinite(stats.rel_residual)) and stats.trace.shape == (2, 3)


# --- the Jacobian penalty term -----------------------------------------------------------------


@pytest.mark.slow
def test_jacobian_term_is_weighted_into_the_loss_and_logged():
  batch = _batch(21)
  # γ = 0: the 'losses' collection is requested for the Jacobian term alone.
  with_term, state = _step(0.0, 1.0)
  without_term, _ = _step(0.0, 0.0)
  new_with, m_with = jax.device_get(with_term(state, batch))
  new_without, m_without = jax.device_get(without_term(state, batch))
  assert "jacobian" in m_with and "jacobian" not in m_without and "fixed_point" not in m_with
  assert (
    np.isfinite(m_with["jacobian"]) and m_with["jacobian"] > 0.0 and m_with["all_finite"] == 1.0
  )
  # The same solve either way; the difference of the losses is the sown penalty.
  np.testing.assert_allclose(m_with["ssim_loss"], m_without["ssim_loss"], rtol=1e-6)
  np.testing.assert_allclose(m_with["loss"] - m_without["loss"], m_with["jacobian"], rtol=1e-4)
  np.testing.assert_allclose(m_with["loss"], m_with["ssim_loss"] + m_with["jacobian"], rtol=1e-6)
  # The term changes the gradient, hence the update.
  assert m_with["grad_norm"] != m_without["grad_norm"]
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(new_with["params"]), jax.tree.leaves(new_without["params"]))
  )
  # The probes come from the step's rng: the same state gives the same value, the next step another.
  _, again = jax.device_get(with_term(state, batch))
  assert again["jacobian"] == m_with["jacobian"]
  _, later = jax.device_get(with_term(dict(state, step=state["step"] + 1), batch))
  assert later["jacobian"] != m_with["jacobian"]


@pytest.mark.slow
def test_jacobian_penalty_gradient_reaches_unit_and_encoders():
  model, params = _model_and_params()
  batch = _batch(22)

  def penalty(params, key):
    _, aux = model.apply(
      {"params": params},
      batch["y1"],
      batch["y2"],
      rngs={unfolding.JACOBIAN_RNG: key},
      mutable=[unfolding.RESIDUAL_COLLECTION],
    )
    (value,) = aux[unfolding.RESIDUAL_COLLECTION]["jacobian_penalty"]
    return value

  value, grads = jax.jit(jax.value_and_grad(penalty), compiler_options=FAST_COMPILE)(
    params, jax.random.PRNGKey(3)
  )
  assert np.isfinite(value) and value > 0.0
  norms = {name: float(_norm(tree)) for name, tree in grads.items()}
  assert all(np.isfinite(v) for v in norms.values())
  assert norms["uf"] > 0.0  # the unit's own parameters
  assert norms["source1"] > 0.0 and norms["source2"] > 0.0  # the encoders, through F1 and F2
  assert norms["inverse"] == 0.0  # the decoder is not part of the map


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def test_jacobian_term_needs_efrufn():
  frufn = models.create_model(dict(name="frufn", num_units=1, **TINY))
  with pytest.raises(ValueError, match="Jacobian penalty term .* needs EFRUFN"):
    train_steps.make_train_step("mfif", frufn, _optimizer(), train_steps.LossWeights(jacobian=1.0))
  config = ml_collections.ConfigDict({"model": {"name": "frufn"}, "loss": {"jacobian": 0.5}})
  with pytest.raises(ValueError, match="loss.jacobian=0.5 needs EFRUFN"):
    loop.jacobian_weight(config)
  config.loss.jacobian = 0.0
  assert loop.jacobian_weight(config) == 0.0
  config = ml_collections.ConfigDict({"model": {"name": "efrufn"}, "loss": {}})
  assert loop.jacobian_weight(config) == 0.0  # configs written before the field existed


# --- checkpoints written before the new fields -------------------------------------------------


@pytest.mark.parametrize("stage", ["mfif", "ivf"])
def test_shipped_weights_load_with_the_new_defaults(stage):
  loaded = checkpoints.load_fusion_model(SHIPPED / stage, expected_task=stage)
  recorded = loaded.metadata["model"]
  defaults = models.default_model_config()
  # Whether or not the recorded config has the new fields, the model gets their defaults.
  for field in NEW_FIELDS:
    assert recorded.get(field, defaults[field]) == defaults[field]
  assert isinstance(loaded.model, unfolding.EFRUFN)
  assert loaded.model.solver.keep_best is True
  stripped = {k: v for k, v in recorded.items() if k not in NEW_FIELDS}
  assert models.create_model(stripped) == loaded.model
  y = np.random.default_rng(23).random((1, 16, 16, 1), np.float32)
  fused = jax.jit(loaded.model.apply, compiler_options=FAST_COMPILE)(
    {"params": loaded.params}, y, y[:, ::-1]
  )
  assert fused.shape == (1, 16, 16, 1) and np.all(np.isfinite(fused))
