"""Tests of FRUFN, EFRUFN, their variants and the model factory."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax import deq
from fusionjax import models

# Tests compile with LLVM's optimisations off: about half the compile time on CPU, and the
# workloads here are too small for the slower code to matter.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# Small widths keep compilation and run time small. FULL keeps the default structure (two Swin
# blocks per GLT, the second shifted) for the gradient, memory and fixed-point tests; the other
# tests use width 4 and one Swin block per GLT, which compiles faster. (At width 4 an untrained
# unit is not always contractive: 1 of 4 random inputs stalled at 3e-2; at widths 8 and 32 all
# converged to ~1e-7.)
FULL = dict(width=8, num_heads=2, cpb_hidden=16, swin_depth=2)
TINY = dict(width=4, num_heads=1, cpb_hidden=8, swin_depth=1)


@pytest.fixture
def rng():
  """A fresh generator per test; the seed is printed so a failure can be replayed."""
  seed = int.from_bytes(os.urandom(4), "little")
  print(f"numpy seed: {seed}")
  return np.random.default_rng(seed)


def _model(base=TINY, **overrides):
  return models.create_model({**base, **overrides})


def _images(rng, shape):
  return tuple(jnp.asarray(rng.random(shape), jnp.float32) for _ in range(2))


def _unit_params(full=False):
  """Real (not random-filled) initial parameters of a small EFRUFN: sources, one unit, inverse.

  Parameters do not depend on the image size, so one initialisation at 8x8 serves every test.
  The key is an RBG key: the default threefry compiles ~5x slower on CPU (same distributions).
  """
  return _init_params(bool(full))


@functools.lru_cache(maxsize=None)
def _init_params(full):
  model = _model(FULL if full else TINY, name="efrufn")
  y = jnp.full((1, 8, 8, 1), 0.5, jnp.float32)
  return _jit(model.init)(jax.random.key(0, impl="rbg"), y, y)


def _frufn_params(num_units, full=False, seed=1):
  """FRUFN parameters: the unit of :func:`_unit_params`, perturbed differently per unit."""
  params = dict(_unit_params(full)["params"])
  noise = np.random.default_rng(seed)  # numpy: JAX would compile a generator per leaf shape.

  def stack(leaf):
    leaf = np.asarray(leaf)
    return jnp.asarray(
      np.stack(
        [leaf * (1.0 + 0.1 * noise.standard_normal(leaf.shape)) for _ in range(num_units)]
      ).astype(np.float32)
    )

  params["uf"] = jax.tree_util.tree_map(stack, params["uf"])
  return {"params": params}


@functools.lru_cache(maxsize=None)
def _apply(name, overrides=()):
  """A jitted ``apply`` (with intermediates) per model config, shared by the tests."""
  model = _model(name=name, **dict(overrides))
  return _jit(lambda v, a, b: model.apply(v, a, b, mutable=["intermediates"]))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


# --- shapes, range, sizes -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 37, 53, 1), (2, 64, 96, 1), (1, 7, 5, 1), (1, 160, 288, 1)])
def test_shapes_and_range_of_both_networks(rng, shape):
  y1, y2 = _images(rng, shape)
  for name, variables in (("efrufn", _unit_params()), ("frufn", _frufn_params(2))):
    fused, aux = _apply(name, (("num_units", 2),))(variables, y1, y2)
    assert fused.shape == shape and fused.dtype == jnp.float32, name
    assert np.isfinite(fused).all(), name
    assert (fused >= 0).all() and (fused <= 1).all(), name
    mask = aux["intermediates"]["mask"][0]
    assert mask.shape == shape and (mask >= 0).all() and (mask <= 1).all(), name
    if name == "efrufn":
      stats = aux["intermediates"]["solver_stats"]
      assert isinstance(stats, tuple) and len(stats) == 1  # Flax's sow convention.
      assert stats[0].num_steps.shape == (shape[0],) and stats[0].finite.all()


def test_init_returns_params_only_and_output_ignores_padding(rng):
  y1, y2 = _images(rng, (1, 37, 53, 1))
  assert set(_unit_params()) == {"params"}
  variables = _frufn_params(2)
  apply = lambda a, b: _apply("frufn", (("num_units", 2),))(variables, a, b)[0]
  fused = apply(y1, y2)
  # The network pads by reflection to 40x56 itself; feeding that padded image gives the same
  # pixels in the original region.
  pad = lambda y: jnp.pad(y, ((0, 0), (0, 3), (0, 3), (0, 0)), mode="reflect")
  np.testing.assert_allclose(apply(pad(y1), pad(y2))[:, :37, :53], fused, rtol=1e-5, atol=1e-6)
  assert not np.allclose(fused, apply(y2, y1), atol=1e-4)  # Sources are not interchangeable.


@pytest.mark.parametrize("name", ["frufn", "efrufn"])
def test_bad_inputs_raise(name):
  model = _model(name=name)
  # Built outside eval_shape: the helpers jit with compiler options, which a nested jit cannot take.
  variables = jax.eval_shape(lambda v: v, _unit_params() if name == "efrufn" else _frufn_params(5))
  good = jnp.zeros((1, 8, 8, 1))
  cases = [
    (jnp.zeros((8, 8, 1)), good, "4 axes"),
    (jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)), "one channel"),
    (jnp.zeros((1, 0, 8, 1)), jnp.zeros((1, 0, 8, 1)), "empty"),
    (good, jnp.zeros((1, 8, 9, 1)), "same shape"),
    (np.zeros((1, 8, 8)), good, "4 axes"),
    ([[0.5]], good, "array"),
  ]
  for y1, y2, message in cases:
    with pytest.raises(ValueError, match=message):
      jax.eval_shape(model.apply, variables, y1, y2)


def test_create_model_validates_config():
  cfg = models.default_model_config()
  assert isinstance(models.create_model(cfg), models.EFRUFN)
  assert isinstance(models.create_model(dict(name="frufn")), models.FRUFN)
  assert isinstance(models.create_model(None), models.EFRUFN)
  bad = [
    (dict(name="unet"), "name"),
    (dict(name="efrufn", variant="shared"), "not available for efrufn"),
    (dict(name="efrufn", variant="no_unfold"), "not available"),
    (dict(name="frufn", variant="bogus"), "not available"),
    (dict(num_heads=6), "divide"),
    (dict(widht=32), "Unknown"),
    (dict(dtype="float16"), "dtype"),
    (dict(solver="newton"), "solver"),
    (dict(backward="exact"), "backward"),
    (dict(max_iter=0), "max_iter"),
    (dict(name="frufn", num_units=0), "num_units"),
    (dict(pool_factors=(2, 0)), "pool_factors"),
    (dict(tol=-1.0), "tol"),
    (dict(unit_rule="paper"), "unit_rule"),
    ("efrufn", "ConfigDict or a dict"),
  ]
  for config, message in bad:
    with pytest.raises(ValueError, match=message):
      models.create_model(config)


def test_solver_options_follow_the_config():
  solver, backward = models.solver_options(dict(max_iter=7, tol=1e-4, anderson_history=3))
  assert solver == deq.Anderson(
    history=3, mixing=1.0, ridge=1e-5, max_iter=7, tol=1e-4, implementation="native"
  )
  assert backward == deq.JFB()
  solver, backward = models.solver_options(
    dict(solver="fixed_point", backward="phantom", phantom_steps=3, fixed_point_damping=0.5)
  )
  assert solver == deq.FixedPointIteration(max_iter=5, tol=1e-3, damping=0.5)
  assert backward == deq.Phantom(steps=3, damping=0.5)
  _, backward = models.solver_options(dict(backward="implicit", implicit_max_iter=12))
  assert backward == deq.Implicit(max_iter=12, tol=1e-4)
  model = models.create_model(dict(max_iter=9))
  assert model.solver.max_iter == 9 and model.backward == deq.JFB()


# --- parameter counts ------------------------------------------------------------------------


def _param_count(config):
  model = models.create_model(config)
  y = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
  return _count(jax.eval_shape(model.init, jax.random.PRNGKey(0), y, y)["params"])


def test_parameter_counts_match_the_paper():
  frufn = {n: _param_count(dict(name="frufn", num_units=n)) for n in (1, 3, 5)}
  print("FRUFN parameters by N:", frufn)
  per_unit = frufn[3] - frufn[1]
  assert per_unit % 2 == 0 and frufn[5] - frufn[3] == per_unit  # Linear in N.
  assert abs(frufn[5] / 0.864e6 - 1) < 0.15
  efrufn = {it: _param_count(dict(name="efrufn", max_iter=it)) for it in (5, 50)}
  print("EFRUFN parameters by max_iter:", efrufn)
  assert efrufn[5] == efrufn[50] == frufn[1]
  assert abs(efrufn[5] / 0.236e6 - 1) < 0.15
  # The variants: shared FRUFN has one unit whatever N; no_mask drops MSMG; no_unfold drops T.
  assert _param_count(dict(name="frufn", variant="shared", num_units=5)) == frufn[1]
  assert _param_count(dict(name="efrufn", variant="no_mask")) < efrufn[5]
  assert _param_count(dict(name="frufn", variant="no_unfold")) < frufn[1]


# --- the fixed point -------------------------------------------------------------------------


@pytest.mark.slow
def test_efrufn_fixed_point_converges(rng):
  y1, y2 = _images(rng, (1, 64, 64, 1))

  def stats(**solver):
    _, aux = _apply("efrufn", tuple(sorted({**FULL, **solver}.items())))(
      _unit_params(full=True), y1, y2
    )
    return jax.tree_util.tree_map(np.asarray, aux["intermediates"]["solver_stats"][0])

  one_step = stats(max_iter=1)
  solved = stats(max_iter=100, tol=1e-4)
  print("one step:", one_step, "solved:", solved)
  assert solved.abs_residual[0] < 1e-2 * one_step.abs_residual[0]
  assert solved.converged.all() and solved.num_steps[0] < 100
  assert solved.rel_residual[0] <= 1e-4


# --- gradients and memory --------------------------------------------------------------------


def _loss_fn(model):
  def loss(params, y1, y2, target):
    return jnp.mean(jnp.square(model.apply({"params": params}, y1, y2) - target))

  return loss


GRAD_SIZE = 64  # Image side of the gradient and memory tests (1 x 64 x 64, as in the benchmark).


@functools.lru_cache(maxsize=None)
def _compiled_grad(name, overrides=()):
  """The compiled gradient of an L2 loss for a FULL-structure tiny model at 64x64."""
  overrides = dict(overrides)
  model = _model(FULL, name=name, **overrides)
  if name == "efrufn":
    params = _unit_params(full=True)["params"]
  else:
    params = _frufn_params(overrides.get("num_units", 5), full=True)["params"]
  shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
  image = jax.ShapeDtypeStruct((1, GRAD_SIZE, GRAD_SIZE, 1), jnp.float32)
  return _jit(jax.grad(_loss_fn(model))).lower(shapes, image, image, image).compile()


def _zero_gradient_leaves(grads, stacked):
  """Paths of parameter leaves (per unit for stacked ones) whose gradient is all zero."""
  bad = []
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    g = np.asarray(g)
    if stacked and "['uf']" in name:
      bad += [f"{name}[unit {i}]" for i in range(g.shape[0]) if not np.any(g[i])]
    elif not np.any(g):
      bad.append(name)
  return bad


@pytest.mark.slow
@pytest.mark.parametrize("name", ["frufn", "efrufn"])
def test_gradients_reach_every_parameter(rng, name):
  if name == "frufn":
    params = _frufn_params(2, full=True)["params"]
    compiled = _compiled_grad(name, (("num_units", 2),))
  else:
    params = _unit_params(full=True)["params"]
    compiled = _compiled_grad(name, (("max_iter", 5),))
  y1, y2, target = (
    jnp.asarray(rng.random((1, GRAD_SIZE, GRAD_SIZE, 1)), jnp.float32) for _ in range(3)
  )
  grads = compiled(params, y1, y2, target)
  assert not _zero_gradient_leaves(grads, stacked=name == "frufn")
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
  # Tθ2 learns in EFRUFN too: its gradient is not negligible next to Tθ1's.
  norm = lambda tree: np.sqrt(sum(float(jnp.sum(g * g)) for g in jax.tree_util.tree_leaves(tree)))
  assert norm(grads["source2"]) > 1e-2 * norm(grads["source1"])


@pytest.mark.slow
def test_training_memory_flat_for_efrufn_and_growing_for_frufn():
  temp = lambda compiled: compiled.memory_analysis().temp_size_in_bytes
  efrufn = {it: temp(_compiled_grad("efrufn", (("max_iter", it),))) for it in (5, 20)}
  # N = 1 is left out: XLA simplifies a one-step scan, which moves that point off the line. The
  # benchmark (benchmarks/models_benchmark.py) shows the whole line.
  frufn = {n: temp(_compiled_grad("frufn", (("num_units", n),))) for n in (2, 3)}
  print("temp bytes: EFRUFN by max_iter", efrufn, "FRUFN by N", frufn)
  assert efrufn[20] <= 1.02 * efrufn[5]
  assert frufn[3] > 1.15 * frufn[2]


# --- variants and dtype ----------------------------------------------------------------------


def test_variants_run_and_differ(rng):
  y1, y2 = _images(rng, (1, 12, 20, 1))
  base = _unit_params()["params"]
  without = lambda tree, *keys: {k: v for k, v in tree.items() if k not in keys}
  cases = {
    ("frufn", "shared"): {"params": base},
    ("frufn", "no_unfold"): {
      "params": {**base, "uf": without(base["uf"], "glt", "transform_scale")}
    },
    ("efrufn", "no_mask"): {"params": {**base, "uf": without(base["uf"], "msmg")}},
  }
  outputs = {}
  for (name, variant), variables in cases.items():
    fused, aux = _apply(name, (("num_units", 3), ("variant", variant)))(variables, y1, y2)
    outputs[variant] = np.asarray(fused)
    assert fused.shape == y1.shape and np.isfinite(fused).all()
    assert ("mask" in aux["intermediates"]) == (variant != "no_mask")
  assert not np.allclose(outputs["shared"], outputs["no_unfold"], atol=1e-5)
  # EFRUFN run as three plain fixed-point steps of eq. 14 is the shared FRUFN with N = 3: the
  # solver's state (F - F2, M) and argument passing change nothing in the computation.
  steps = (("max_iter", 3), ("solver", "fixed_point"), ("tol", 0.0), ("unit_rule", "residual"))
  fused, aux = _apply("efrufn", steps)({"params": base}, y1, y2)
  assert int(aux["intermediates"]["solver_stats"][0].num_steps[0]) == 3
  np.testing.assert_allclose(fused, outputs["shared"], rtol=1e-5, atol=1e-5)


def test_update_rules_without_transform_are_the_classical_rules(rng):
  f1, f, f2 = (jnp.asarray(rng.standard_normal((1, 8, 16, 4)), jnp.float32) for _ in range(3))
  m0 = jnp.asarray(rng.random((1, 8, 16, 1)), jnp.float32)
  params = {"msmg": _unit_params()["params"]["uf"]["msmg"]}
  units = {
    rule: models.UFUnit(4, use_transform=False, rule=rule, swin_depth=1, num_heads=1, cpb_hidden=8)
    for rule in ("residual", "anchored")
  }
  run = _jit(lambda p: {r: u.apply({"params": p}, f1, f, m0, f2) for r, u in units.items()})
  out = run(params)
  mask = out["residual"][1]
  np.testing.assert_allclose(out["anchored"][1], mask)
  # Eq. 11 (F' = M F1 + (1 - M) F) and eq. 10 (F' = M F1 + (1 - M) F2).
  np.testing.assert_allclose(out["residual"][0], mask * f1 + (1 - mask) * f, atol=1e-5)
  np.testing.assert_allclose(out["anchored"][0], mask * f1 + (1 - mask) * f2, atol=1e-5)


def test_no_unfold_is_the_plain_fusion_rule(rng):
  y1, y2 = _images(rng, (1, 8, 8, 1))
  params = _unit_params()["params"]
  params = {**params, "uf": {"msmg": params["uf"]["msmg"]}}
  model = _model(name="frufn", variant="no_unfold")

  def pieces(p, a, b):
    fused, aux = model.apply({"params": p}, a, b, mutable=["intermediates"])
    mask = aux["intermediates"]["mask"][0]
    src = lambda name, y: models.SourceTransform(4).apply({"params": p[name]}, y)
    f = mask * src("source1", a) + (1 - mask) * src("source2", b)
    return fused, models.InverseTransform().apply({"params": p["inverse"]}, f)

  fused, expected = _jit(pieces)(params, y1, y2)
  np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params(rng):
  y1, y2 = _images(rng, (1, 37, 53, 1))
  model = _model(name="efrufn", dtype="bfloat16")
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), y1, y2)
  assert all(s.dtype == jnp.float32 for s in jax.tree_util.tree_leaves(shapes))
  fused, aux = _apply("efrufn", (("dtype", "bfloat16"),))(_unit_params(), y1, y2)
  reference, _ = _apply("efrufn", (("num_units", 2),))(_unit_params(), y1, y2)
  assert fused.dtype == jnp.float32 and np.isfinite(fused).all()
  assert (fused >= 0).all() and (fused <= 1).all()
  assert aux["intermediates"]["solver_stats"][0].finite.all()
  assert float(jnp.mean(jnp.abs(fused - reference))) < 2e-2
