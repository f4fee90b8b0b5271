"""train_and_evaluate's checks before any compute, the configs, train.py, and the progress logging.

Every failure here must come before anything is written to the workdir (and before data loading
and compilation where the brief says so); none of these tests compiles a network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))  # `configs` lives at the repository root.

from configs import ivf, meif, mfif  # noqa: E402
from fusionjax import checkpoints  # noqa: E402
from fusionjax import data as fj_data  # noqa: E402
from fusionjax import tasks  # noqa: E402
from fusionjax.train import logging as train_logging  # noqa: E402
from fusionjax.train import loop  # noqa: E402
from shared_data import SHARED_DATA

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(
  not (DATA / "clean_natural").is_dir(), reason="benchmark data not staged"
)
CONFIGS = {"mfif": mfif, "meif": meif, "ivf": ivf}


def _smoke(task: str, data_dir=None):
  config = CONFIGS[task].get_config("smoke")
  config.data.data_dir = None if data_dir is None else str(data_dir)
  return config


def _snapshot(path: Path) -> dict:
  """Every file under ``path`` with its size and modification time (empty if absent)."""
  if not path.exists():
    return {}
  return {
    str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
    for p in sorted(path.rglob("*"))
  }


def _fake_checkpoint(workdir: Path, task: str) -> None:
  """A stage checkpoint holding only metadata of ``task`` (enough for the teacher and resume checks)."""
  with checkpoints.StageCheckpointer(workdir) as ckpt:
    ckpt.save(
      1,
      {"step": np.int32(1)},
      {
        "format": checkpoints.FORMAT,
        "task": task,
        "model": {"name": "efrufn"},
        "colornet": None,
        "config": {},
        "teacher": None,
        "workdir": str(workdir),
        "fusionjax_version": "0",
      },
    )


@pytest.fixture
def no_data_loading(monkeypatch):
  """Fails the test if the training data is touched."""

  def refuse(*args, **kwargs):
    raise AssertionError("training data was loaded before the configuration checks finished")

  monkeypatch.setattr(fj_data, "make_training_source", refuse)


@pytest.mark.parametrize("task", ["mfif", "meif", "ivf"])
def test_configs_chain_and_document_every_stage(task):
  config = CONFIGS[task].get_config()
  assert config.task == task and config.workdir_default == f"runs/{task}"
  assert (
    config.model.name == "efrufn" and config.data.patch_size == 128 and config.data.batch_size == 8
  )
  expected_teacher = {"mfif": None, "meif": "runs/mfif", "ivf": "runs/meif"}[task]
  assert config.teacher_ckpt == expected_teacher
  assert config.use_teacher == (task != "mfif")
  assert (config.loss.lambda_gt > 0) == (task != "mfif")
  assert config.get("train_colornet", False) == (task == "meif")
  smoke = CONFIGS[task].get_config("smoke")
  assert smoke.workdir_default == f"runs/smoke/{task}" and smoke.data.patch_size == 32
  if expected_teacher:
    assert smoke.teacher_ckpt == expected_teacher.replace("runs/", "runs/smoke/")
  with pytest.raises(ValueError, match="smoke"):
    CONFIGS[task].get_config("bogus")
  doc = CONFIGS[task].__doc__
  assert f"python train.py --config=configs/{task}.py" in doc and "smoke" in doc


def test_missing_data_dir_names_the_flag_and_the_environment_variable(
  tmp_path, monkeypatch, no_data_loading
):
  monkeypatch.delenv(loop.DATA_DIR_ENV, raising=False)
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"--config\.data\.data_dir.*FUSIONJAX_DATA"):
    loop.train_and_evaluate(_smoke("mfif"), workdir)
  assert not workdir.exists()


def test_environment_variable_is_the_default_data_dir(tmp_path, monkeypatch):
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv(loop.DATA_DIR_ENV, str(empty))
  config = _smoke("mfif")
  assert loop.resolve_data_dir(config) == str(empty.absolute())
  config.data.data_dir = str(tmp_path)  # the flag wins over the environment
  assert loop.resolve_data_dir(config) == str(tmp_path.absolute())
  monkeypatch.setenv(loop.DATA_DIR_ENV, str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    loop.resolve_data_dir(_smoke("mfif"))


@needs_data
@pytest.mark.parametrize("task, dataset", [("mfif", "clean_natural"), ("ivf", "roadscene")])
def test_data_dir_without_the_needed_dataset(tmp_path, task, dataset):
  # A data root holding only the other stages' sets.
  root = tmp_path / "data"
  root.mkdir()
  for name in ("tno", "sice16", "roadscene", "clean_natural"):
    if name != dataset:
      (root / name).symlink_to(DATA / name)
  workdir = tmp_path / "run"
  config = _smoke(task, root)
  config.use_teacher = False
  with pytest.raises(FileNotFoundError, match=dataset):
    loop.train_and_evaluate(config, workdir)
  assert not workdir.exists()


@needs_data
def test_missing_teacher_fails_before_data_and_writes_nothing(tmp_path, no_data_loading):
  config = _smoke("meif", DATA)
  config.teacher_ckpt = str(tmp_path / "no_such_stage1")
  workdir = tmp_path / "run"
  with pytest.raises(FileNotFoundError, match=r"Teacher checkpoint.*configs/mfif\.py"):
    loop.train_and_evaluate(config, workdir)
  assert not workdir.exists()
  config.teacher_ckpt = None
  with pytest.raises(ValueError, match="teacher_ckpt"):
    loop.train_and_evaluate(config, workdir)
  assert not workdir.exists()


@pytest.mark.parametrize("task", ["meif", "ivf"])
def test_no_teacher_is_looked_up_without_the_gradient_transfer_term(tmp_path, task):
  config = _smoke(task, tmp_path)
  config.teacher_ckpt = str(tmp_path / "no_such_teacher")
  assert loop.uses_teacher(config)
  with pytest.raises(FileNotFoundError):
    loop.resolve_teacher(config, existing=None)
  config.use_teacher = False
  assert not loop.uses_teacher(config) and loop.resolve_teacher(config, existing=None) is None
  config.use_teacher, config.loss.lambda_gt = True, 0.0
  assert not loop.uses_teacher(config) and loop.resolve_teacher(config, existing=None) is None


@needs_data
@pytest.mark.parametrize("task, wrong", [("meif", "ivf"), ("ivf", "mfif")])
def test_wrong_task_teacher_fails_before_data_and_leaves_workdirs_alone(
  tmp_path, task, wrong, no_data_loading
):
  teacher = tmp_path / "teacher"
  _fake_checkpoint(teacher, wrong)
  teacher_files = _snapshot(teacher)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("kept")
  before = _snapshot(workdir)
  config = _smoke(task, DATA)
  config.teacher_ckpt = str(teacher)
  needed = tasks.TEACHER_OF[task]
  with pytest.raises(ValueError, match=f"trained for '{wrong}'.*needs a '{needed}' teacher"):
    loop.train_and_evaluate(config, workdir)
  assert _snapshot(workdir) == before
  assert _snapshot(teacher) == teacher_files


@needs_data
def test_workdir_of_another_stage_is_not_overwritten(tmp_path, no_data_loading):
  workdir = tmp_path / "run"
  _fake_checkpoint(workdir, "meif")
  before = _snapshot(workdir)
  with pytest.raises(ValueError, match="holds a 'meif' checkpoint"):
    loop.train_and_evaluate(_smoke("mfif", DATA), workdir)
  assert _snapshot(workdir) == before


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("num_steps", 0, "num_steps"),
    ("log_every", -1, "log_every"),
    ("sample_every", -2, "sample_every"),
  ],
)
def test_bad_config_values_are_rejected(tmp_path, field, value, message, no_data_loading):
  config = _smoke("mfif", tmp_path)
  config[field] = value
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, tmp_path / "run")
  config = _smoke("mfif", tmp_path)
  config.data.patch_size = 8
  with pytest.raises(ValueError, match="patch_size"):
    loop.train_and_evaluate(config, tmp_path / "run")
  config = _smoke("mfif", tmp_path)
  config.loss.lambda_gt = 1.0
  config.use_teacher = True
  with pytest.raises(ValueError, match="no teacher"):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_distributed_initialize_only_when_configured(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  monkeypatch.delenv(loop.DATA_DIR_ENV, raising=False)
  config = _smoke("mfif")  # no data_dir: stops right after the start
  with pytest.raises(ValueError, match="data_dir"):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert calls == []
  config.distributed = True
  with pytest.raises(ValueError, match="data_dir"):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert len(calls) == 1


def test_multi_process_flags_go_to_jax_distributed(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(k))
  monkeypatch.delenv(loop.DATA_DIR_ENV, raising=False)
  config = _smoke("mfif")  # no data_dir: stops right after the start
  config.coordinator_address, config.num_processes, config.process_id = "10.0.0.1:1234", 4, 3
  with pytest.raises(ValueError, match="data_dir"):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}]


@pytest.mark.parametrize(
  "fields, message",
  [
    (
      {"coordinator_address": "10.0.0.1:1234"},
      "--config.num_processes, --config.process_id not set",
    ),
    ({"coordinator_address": "10.0.0.1", "num_processes": 2, "process_id": 0}, "is not HOST:PORT"),
    (
      {"coordinator_address": "host:99999", "num_processes": 2, "process_id": 0},
      "is not HOST:PORT",
    ),
    (
      {"coordinator_address": "host:1234", "num_processes": 0, "process_id": 0},
      "num_processes must be a positive",
    ),
    (
      {"coordinator_address": "host:1234", "num_processes": 2, "process_id": 2},
      r"process_id must be in 0\.\.1",
    ),
  ],
)
def test_bad_multi_process_flags_are_rejected_before_jax_starts(
  tmp_path, monkeypatch, fields, message
):
  monkeypatch.setattr(
    jax.distributed, "initialize", lambda *a, **k: pytest.fail("initialize was called")
  )
  config = _smoke("mfif", tmp_path)
  config.update(fields)
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_train_py_reports_a_bad_multi_process_flag_in_one_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [
      sys.executable,
      str(ROOT / "train.py"),
      "--config=configs/mfif.py:smoke",
      f"--workdir={tmp_path / 'run'}",
      "--config.coordinator_address=127.0.0.1:1234",
      "--config.num_processes=2",
      "--config.process_id=5",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
    "train.py: error: --config.process_id must be in 0..1 (this process's rank among "
    "--config.num_processes=2), got 5."
  ]
  assert not (tmp_path / "run").exists()


def test_unknown_parallel_mode_is_rejected(tmp_path, no_data_loading):
  config = _smoke("mfif", tmp_path)
  config.parallel = "vmap"
  with pytest.raises(ValueError, match="--config.parallel='vmap'; use one of pmap, jit"):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_train_py_reports_missing_data_dir(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != loop.DATA_DIR_ENV}
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run(
    [
      sys.executable,
      str(ROOT / "train.py"),
      "--config=configs/mfif.py:smoke",
      f"--workdir={tmp_path / 'run'}",
      "--config.num_steps=3",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert "--config.data.data_dir" in result.stderr and loop.DATA_DIR_ENV in result.stderr
  assert not (tmp_path / "run").exists()


def test_metrics_writer_drops_lines_past_the_resumed_step(tmp_path):
  writer = train_logging.MetricsWriter(tmp_path)
  for step in range(1, 6):
    writer.write(step, {"loss": 1.0 / step, "bad": float("nan")})
  records = train_logging.read_metrics(tmp_path)
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and records[0]["bad"] is None
  train_logging.MetricsWriter(tmp_path, resume_step=3).write(4, {"loss": 0.0})
  assert [(r["step"], r["loss"]) for r in train_logging.read_metrics(tmp_path)] == [
    (1, 1.0),
    (2, 0.5),
    (3, 1.0 / 3),
    (4, 0.0),
  ]


def test_progress_line_and_duration_format():
  progress = train_logging.Progress("ivf", start_step=0, num_steps=100)
  progress._last_time -= 10.0  # ten seconds for the first ten steps
  progress.update(10)
  line = progress.line(
    10,
    {
      "loss": 0.5,
      "intensity": 0.1,
      "deq_steps": 4.0,
      "deq_rel_residual": 1e-3,
      "grad_norm": 0.2,
      "learning_rate": 1e-4,
      "all_finite": 1.0,
    },
  )
  assert line.startswith(
    "[ivf] step 10/100 | loss 0.5000 | intensity 0.1000 | deq 4.0 it, res 1.0e-03"
  )
  assert "1.00 steps/s" in line and "ETA 1m30s" in line and "all_finite" not in line
  assert (
    train_logging.format_duration(3725) == "1h02m05s" and train_logging.format_duration(7) == "7s"
  )


def test_sample_grid_layout(tmp_path):
  rng = np.random.default_rng(3)
  grey = rng.random((2, 5, 7, 1)).astype(np.float32)
  colour = rng.random((2, 5, 7, 3)).astype(np.float32)
  grid = train_logging.sample_grid([grey, colour])
  assert grid.shape == (2 * 5 + 2, 2 * 7 + 2, 3)
  np.testing.assert_array_equal(grid[0:5, 0:7], np.repeat(grey[0], 3, axis=-1))
  np.testing.assert_array_equal(grid[7:12, 9:16], colour[1])
  assert np.all(grid[5:7] == 1.0)
  path = train_logging.write_sample_grid(tmp_path, 12, [grey, colour])
  assert path.name == "samples_step_12.png" and path.is_file()
  with pytest.raises(ValueError, match="same|one size"):
    train_logging.sample_grid([grey, colour[:, :4]])


def test_quiet_library_logs_hides_orbax_info_only():
  import logging as py_logging

  train_logging.quiet_library_logs()
  logger = py_logging.getLogger("absl")
  make = lambda level, path: py_logging.LogRecord("absl", level, path, 1, "m", None, None)
  assert not logger.filter(make(py_logging.INFO, "/x/orbax/checkpoint/manager.py"))
  assert logger.filter(make(py_logging.WARNING, "/x/orbax/checkpoint/manager.py"))
  assert logger.filter(make(py_logging.INFO, "/x/fusionjax/train/loop.py"))
