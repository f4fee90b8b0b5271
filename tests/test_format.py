"""The tree is formatted with the formatter configured in pyproject.toml (ruff format)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
  exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
  return [exe] if Path(exe).exists() else None


def test_every_python_file_is_formatted():
  ruff = _ruff()
  if ruff is None:
    if os.environ.get("CI"):
      pytest.fail(
        "ruff is not installed: `pip install -e '.[dev]'` installs it (CI must check the format)."
      )
    pytest.skip("ruff is not installed (`pip install -e '.[dev]'`)")
  result = subprocess.run(
    ruff + ["format", "--check", "--diff", str(REPO)],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, (
    "Some files are not formatted; run `ruff format .` in the repository root.\n"
    + result.stdout[-4000:]
    + result.stderr[-2000:]
  )
