"""Stage checkpoints: save/restore, metadata, lineage, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fusionjax import checkpoints


def _state():
  params = {
    "layer": {"kernel": jnp.asarray(np.random.default_rng().normal(size=(3, 4)), jnp.float32)}
  }
  return {
    "step": np.asarray(5),
    "params": params,
    "opt_state": optax.adam(1e-3).init(params),
    "rng": jax.random.key_data(jax.random.key(1)),
  }


def _metadata(task, teacher=None):
  return {
    "format": checkpoints.FORMAT,
    "task": task,
    "teacher": teacher,
    "workdir": f"/runs/{task}",
  }


def test_save_restore_round_trip(tmp_path):
  state = _state()
  with checkpoints.StageCheckpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in (1, 2, 3):
      ckpt.save(step, state, _metadata("mfif"), force=True)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
    restored, metadata = ckpt.restore(state_template=state)
  assert metadata["step"] == 3 and metadata["task"] == "mfif"
  np.testing.assert_array_equal(
    restored["params"]["layer"]["kernel"], state["params"]["layer"]["kernel"]
  )
  assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(state["opt_state"])


def test_lineage_from_last_stage_alone(tmp_path):
  stage1 = dict(_metadata("mfif"), step=10)
  stage2 = dict(
    _metadata("meif", {"path": "/runs/mfif", "step": 10, "task": "mfif", "metadata": stage1}),
    step=20,
  )
  stage3 = _metadata("ivf", {"path": "/runs/meif", "step": 20, "task": "meif", "metadata": stage2})
  with checkpoints.StageCheckpointer(tmp_path) as ckpt:
    ckpt.save(30, _state(), stage3, force=True)
  lineage = checkpoints.stage_lineage(checkpoints.read_metadata(tmp_path))
  assert [(s["task"], s["step"]) for s in lineage] == [("ivf", 30), ("meif", 20), ("mfif", 10)]
  assert lineage[1]["path"] == "/runs/meif"


def test_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="train.py"):
    checkpoints.read_metadata(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError):
    checkpoints.load_fusion_model(tmp_path / "nothing")
  with checkpoints.StageCheckpointer(tmp_path) as ckpt:
    ckpt.save(1, _state(), {"format": "other"}, force=True)
  with pytest.raises(ValueError, match="not a fusionjax stage checkpoint"):
    checkpoints.read_metadata(tmp_path)
  with pytest.raises(TypeError, match="JSON"):
    checkpoints.StageCheckpointer(tmp_path / "x").save(1, _state(), {"bad": object()})
