"""Two processes on localhost train one MFIF smoke run together, like one process with two devices.

Each process of ``train.py`` gets one CPU device and ``--config.coordinator_address=127.0.0.1:PORT
--config.num_processes=2 --config.process_id=I``; JAX's CPU collectives (gloo) average the
gradients across them. The run must write one checkpoint per saved step and one ``metrics.jsonl``,
end with the parameters of a single-process run on 2 forced CPU devices (same global batch, seed and
steps), and its checkpoint must resume in one process.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from fusionjax import checkpoints
from fusionjax.train import logging as train_logging

ROOT = Path(__file__).resolve().parents[1]
# The smoke MFIF run, cut further (one unit, one pooling scale) to keep compilation short; 4 steps
# with checkpoints at 2 and 4.
_ARGS = [
  "--config=configs/mfif.py:smoke",
  "--config.data.data_dir=fusionjax/data/samples",
  "--config.num_steps=4",
  "--config.checkpoint_every=2",
  "--config.keep_checkpoints=5",
  "--config.model.num_units=1",
  "--config.model.pool_factors=(1,)",
]
_TIMEOUT_S = 600


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _env(devices: int, cache: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  env.update(
    JAX_PLATFORMS="cpu",
    FUSIONJAX_CACHE_DIR=cache,
    PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    XLA_FLAGS="--xla_backend_optimization_level=0"
    + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else ""),
  )
  return env


def _train(workdir: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "train.py", *_ARGS, f"--workdir={workdir}", *extra],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=_TIMEOUT_S,
  )


def _params(workdir: Path, step: int) -> np.ndarray:
  with checkpoints.StageCheckpointer(workdir, create=False) as ckpt:
    state, metadata = ckpt.restore(step)
  assert metadata["step"] == step
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(state["params"])])


@pytest.mark.slow
def test_two_processes_match_one_process_on_two_devices_and_resume(tmp_path):
  # Gloo connects the processes through the address this machine's name resolves to.
  if not ipaddress.ip_address(socket.gethostbyname(socket.gethostname())).is_loopback:
    pytest.skip(
      "the host name does not resolve to a loopback address, which the CPU collectives would use"
    )
  multi, single = tmp_path / "two_processes", tmp_path / "one_process"
  port = _free_port()
  env = _env(1, "off")
  logs = [open(tmp_path / f"process_{i}.log", "w") for i in range(2)]
  procs = []
  try:
    for i in range(2):
      procs.append(
        subprocess.Popen(
          [
            sys.executable,
            "train.py",
            *_ARGS,
            f"--workdir={multi}",
            f"--config.coordinator_address=127.0.0.1:{port}",
            "--config.num_processes=2",
            f"--config.process_id={i}",
          ],
          cwd=ROOT,
          env=env,
          stdout=logs[i],
          stderr=subprocess.STDOUT,
        )
      )
    codes = [p.wait(timeout=_TIMEOUT_S) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      f.close()
  tails = "\n".join(
    f"process {i}:\n" + (tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(2)
  )
  assert codes == [0, 0], tails
  assert "2 device(s) (jit, 2 process(es))" in tails

  # One checkpoint per saved step for the whole run; metrics and samples written once (process 0).
  assert sorted(p.name for p in checkpoints.checkpoint_dir(multi).iterdir()) == ["2", "4"]
  assert [m["step"] for m in train_logging.read_metrics(multi)] == [1, 2, 3, 4]
  assert (multi / "samples_step_4.png").is_file()

  # The same global batch, seed and steps in one process on 2 devices: the same parameters.
  cache = str(tmp_path / "compile_cache")
  reference = _train(single, _env(2, cache))
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert "2 device(s) (jit, 1 process(es))" in reference.stderr
  multi_params, single_params = _params(multi, 4), _params(single, 4)
  assert np.max(np.abs(multi_params - _params(multi, 2))) > 1e-4  # Steps 3 and 4 moved them.
  np.testing.assert_allclose(multi_params, single_params, rtol=0, atol=1e-5)

  # The two-process checkpoint of step 2 resumes in one process and continues to step 4, with the
  # parameters of the uninterrupted runs (the compiled step comes from the reference run's cache).
  resumed = tmp_path / "resumed"
  shutil.copytree(multi, resumed)
  shutil.rmtree(checkpoints.checkpoint_dir(resumed) / "4")
  result = _train(resumed, _env(2, cache))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming from" in result.stderr and "at step 2" in result.stderr
  assert [m["step"] for m in train_logging.read_metrics(resumed)] == [1, 2, 3, 4]
  np.testing.assert_allclose(_params(resumed, 4), single_params, rtol=0, atol=1e-5)
