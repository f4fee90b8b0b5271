"""Process settings of the command-line programs (fusionjax.runtime): XLA flags and compile cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fusionjax import runtime

ROOT = Path(__file__).resolve().parents[1]


def test_xla_flags_added_once_and_user_value_wins():
  flag = runtime.XLA_FLAGS[0]
  name = flag.split("=")[0]
  assert runtime.xla_flags("") == flag
  assert runtime.xla_flags("--xla_foo=1") == f"--xla_foo=1 {flag}"
  assert runtime.xla_flags(runtime.xla_flags("")) == flag  # idempotent
  mine = f"{name}=LIBRARY_FUSION_TYPE_NONE"
  assert runtime.xla_flags(mine) == mine


def test_cache_dir_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "c"))
  assert runtime.cache_dir() == tmp_path / "c"
  for off in ("off", "0", "", "None"):
    monkeypatch.setenv(runtime.CACHE_ENV, off)
    assert runtime.cache_dir() is None
  monkeypatch.delenv(runtime.CACHE_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert runtime.cache_dir() == tmp_path / "xdg" / "fusionjax" / "jax"


def test_configure_fills_the_cache_and_a_second_process_hits_it(tmp_path):
  program = (
    "import jax, jax.numpy as jnp, logging\n"
    "from fusionjax import runtime\n"
    "print(runtime.configure())\n"
    # However fast this tiny program compiles, it must be cached for the check below.
    "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
    "logging.basicConfig(level=logging.WARNING)\n"
    "logging.getLogger('jax._src.compiler').setLevel(logging.DEBUG)\n"
    "f = jax.jit(lambda x: jnp.linalg.qr(jnp.sin(x) @ x.T)[0].sum())\n"
    "print(float(f(jnp.ones((64, 64)))))\n"
  )
  env = dict(os.environ, FUSIONJAX_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = ""
  runs = [
    subprocess.run(
      [sys.executable, "-c", program],
      env=env,
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
    )
    for _ in range(2)
  ]
  for run in runs:
    assert run.returncode == 0, run.stderr[-2000:]
    assert str(tmp_path / "cache") in run.stdout
  assert any((tmp_path / "cache").iterdir())
  assert "cache hit" in runs[1].stderr.lower()
