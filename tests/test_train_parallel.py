"""The data-parallel step on 2 forced CPU devices equals the 1-device step on the same global batch.

XLA_FLAGS must be set before JAX starts, so the comparison runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from fusionjax import models
from fusionjax.train import parallel, state as train_state, steps as train_steps

seed = int(sys.argv[1])
assert jax.device_count() == 2, jax.devices()
tiny = dict(width=4, num_heads=1, swin_depth=1, pool_factors=(1,), cpb_hidden=8)
# Plain SGD with step 1: the parameter change is the (averaged) gradient itself, so comparing the
# updated parameters compares the gradients at their own scale (Adam's first step, g / (|g| + eps),
# would magnify rounding differences of near-zero entries).
optimizer = optax.sgd(1.0)
rng = np.random.default_rng(seed)
y = jnp.full((1, 16, 16, 1), 0.5)


def run(task, student, teacher, weights, batch):
  host_state = jax.device_get(train_state.init_train_state(jax.random.PRNGKey(seed), model=student,
                                                           optimizer=optimizer, patch_size=16))
  frozen = ()
  if teacher is not None:
    frozen = (jax.device_get(teacher.init(jax.random.PRNGKey(seed + 1), y, y)["params"]),)
  step = train_steps.make_train_step(task, student, optimizer, weights, teacher_model=teacher)
  before = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(host_state["params"])])
  runs = {}
  for label, n in (("one", 1), ("two", 2)):
    dp = parallel.DataParallel(devices=jax.devices()[:n])
    new_state, metrics = dp.compile_step(step)(dp.replicate(host_state), dp.shard(batch),
                                              *[dp.replicate(f) for f in frozen])
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(new_state["params"]))]
    runs[label] = {"loss": [float(v) for v in np.asarray(metrics["loss"])],
                   "update": np.concatenate([x[0].ravel() for x in leaves]) - before,
                   "replica_spread": max(float(np.max(np.abs(x - x[:1]))) for x in leaves)}
  one, two = runs["one"]["update"], runs["two"]["update"]
  return {"loss_1": runs["one"]["loss"], "loss_2": runs["two"]["loss"],
          "relative_update_diff": float(np.linalg.norm(one - two) / np.linalg.norm(one)),
          "max_param_diff": float(np.max(np.abs(one - two))),
          "replica_spread_2": runs["two"]["replica_spread"], "change": float(np.max(np.abs(one)))}


shape = (4, 16, 24, 1)
batch = {k: rng.random(shape, np.float32) for k in ("y1", "y2", "reference")}
# EFRUFN with Anderson weights per image ('native') and tol 0 (every iteration runs): a fused image
# does not depend on the rest of its batch. The MEIF step covers the frozen teacher argument too.
efrufn = models.create_model(dict(name="efrufn", max_iter=2, tol=0.0, **tiny))
frufn = models.create_model(dict(name="frufn", num_units=1, **tiny))
report = {"meif": run("meif", efrufn, frufn, train_steps.LossWeights(gradient_transfer=1.0), batch)}
print(json.dumps(report))
'''


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7])
def test_two_device_step_matches_one_device(seed):
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  result = subprocess.run(
    [sys.executable, "-c", _SCRIPT, str(seed)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  print(report)
  for task, r in report.items():
    # Both devices hold the same averaged loss and the same parameters, and the step moved them.
    assert len(r["loss_2"]) == 2 and r["loss_2"][0] == r["loss_2"][1], task
    assert r["replica_spread_2"] == 0.0, task
    np.testing.assert_allclose(r["loss_2"][0], r["loss_1"][0], rtol=1e-5, err_msg=task)
    assert r["change"] > 1e-6, task
    # Float tolerance of a float32 gradient: bias and norm-scale gradients are sums over every pixel
    # of terms of both signs, and XLA sums a batch of 4 in another order than two batches of 2. On
    # one device the batch-4 gradient already differs from the mean of its per-image gradients by
    # a relative 3e-5 (FRUFN) and 1e-3 (EFRUFN, whose solve amplifies it); the L_gt hinge adds
    # sub-gradient flips at ties. A missing or wrong pmean would differ by O(1) (and leave the
    # replicas apart).
    assert r["relative_update_diff"] < 5e-3, task


_MODES_SCRIPT = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from fusionjax import models
from fusionjax.train import parallel, state as train_state, steps as train_steps

assert jax.device_count() == 2, jax.devices()
seed, num_steps = int(sys.argv[1]), int(sys.argv[2])
tiny = dict(width=4, num_heads=1, swin_depth=1, pool_factors=(1,), cpb_hidden=8)
student = models.create_model(dict(name="efrufn", max_iter=2, **tiny))
teacher = models.create_model(dict(name="frufn", num_units=1, **tiny))
optimizer = optax.adam(1e-2)
weights = train_steps.LossWeights(gradient_transfer=1.0)
y = jnp.full((1, 16, 16, 1), 0.5)
host_state = jax.device_get(train_state.init_train_state(jax.random.PRNGKey(seed), model=student,
                                                         optimizer=optimizer, patch_size=16))
teacher_params = jax.device_get(teacher.init(jax.random.PRNGKey(seed + 1), y, y)["params"])
step = train_steps.make_train_step("meif", student, optimizer, weights, teacher_model=teacher)
rng = np.random.default_rng(seed)
batches = [{k: rng.random((4, 16, 24, 1), np.float32) for k in ("y1", "y2", "reference")}
           for _ in range(num_steps)]
report = {}
for mode in parallel.MODES:
  dp = parallel.make_data_parallel(mode)
  compiled = dp.compile_step(step)
  state, frozen = dp.replicate(host_state), dp.replicate(teacher_params)
  losses = []
  for batch in batches:
    state, metrics = compiled(state, dp.shard(batch), frozen)
    losses.append(float(np.asarray(dp.unreplicate(metrics)["loss"])))
  params = dp.unreplicate(state["params"])
  report[mode] = {"losses": losses, "step": int(np.asarray(dp.unreplicate(state["step"]))),
                  "params": np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)]).tolist(),
                  "replicated": all(getattr(x, "is_fully_replicated", True) for x in jax.tree.leaves(state)),
                  "devices": dp.num_global_devices}
before = np.concatenate([np.ravel(x) for x in jax.tree.leaves(host_state["params"])])
report["change"] = float(np.max(np.abs(np.asarray(report["jit"]["params"]) - before)))
print(json.dumps(report))
'''


@pytest.mark.slow
def test_jit_mesh_step_matches_pmap_step():
  """``--config.parallel=jit`` and ``pmap`` give the same parameters after a few Adam steps on 2 devices."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  result = subprocess.run(
    [sys.executable, "-c", _MODES_SCRIPT, "3", "3"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  pmap, jit = report["pmap"], report["jit"]
  assert pmap["devices"] == jit["devices"] == 2
  assert pmap["step"] == jit["step"] == 3 and jit["replicated"]
  assert report["change"] > 1e-3  # Three Adam steps of 1e-2 moved the parameters.
  # Both run the same per-shard step and the same all-reduce, so only XLA's fusion choices differ.
  np.testing.assert_allclose(jit["losses"], pmap["losses"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jit["params"], pmap["params"], rtol=0, atol=1e-5)
