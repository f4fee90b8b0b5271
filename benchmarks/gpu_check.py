r"""Accelerator check: inference latency, training steps, input pipeline, training memory; one report.

Run by ``benchmarks/gpu_check.sh`` (which installs what is missing first); sized to finish within
about eight minutes on one GPU: each section is skipped, with a note in the report, once the time
budget (``--budget_s``) is spent. Sections:

1. Inference latency at 224x448 (EFRUFN width 32 with 5 solver iterations, FRUFN N = 5, IFCNN) in
   float32 and bfloat16 compute, batch 1 and 8: seconds per call and images per second.
2. One training step of each stage's full config (EFRUFN, batch 8, 128 px): seconds per step,
   crops per second, compile time, XLA's temporary memory, and beside it the training input
   pipeline's batches per second on the shipped sample images (MFIF's synthetic pairs, MEIF, IVF).
3. Training memory against iterations 1..20 for FRUFN and EFRUFN (paper Fig. 13: batch 4).

``--cpu_smoke`` runs the same code paths at tiny sizes on the CPU (for testing the script).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
  if str(path) not in sys.path:
    sys.path.insert(0, str(path))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fusionjax import models  # noqa: E402
from fusionjax import tasks  # noqa: E402


class Budget:
  """Wall-clock budget shared by the sections."""

  def __init__(self, seconds: float):
    self.deadline = time.monotonic() + seconds

  @property
  def left(self) -> float:
    return self.deadline - time.monotonic()


def _time(fn, args, runs: int) -> tuple[float, float]:
  """(compile seconds, fastest call seconds)."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))
  best = float("inf")
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - start)
  return compile_s, best


def latency_section(size, batches, runs, width, budget) -> list[str]:
  from ifcnn import IFCNN

  rows = [
    "| network | compute dtype | batch | compile s | s / call | images / s |",
    "|---|---|---:|---:|---:|---:|",
  ]
  height, wide = size
  for name in ("efrufn", "frufn", "ifcnn"):
    for dtype in ("float32", "bfloat16"):
      for batch in batches:
        if budget.left < 0:
          rows.append(f"| {name} | {dtype} | {batch} | skipped: time budget spent | | |")
          continue
        key = jax.random.PRNGKey(0)
        y1 = jax.random.uniform(key, (batch, height, wide, 1))
        y2 = jax.random.uniform(jax.random.fold_in(key, 1), (batch, height, wide, 1))
        if name == "ifcnn":
          if dtype == "bfloat16":
            continue
          model = IFCNN()
        else:
          model = models.create_model(
            dict(
              name=name,
              width=width,
              num_heads=4 if width >= 32 else 2,
              num_units=5,
              max_iter=5,
              tol=0.0,
              dtype=dtype,
            )
          )
        small = (1, 32, 32, 1)
        with jax.threefry_partitionable(False):
          params = jax.jit(model.init)(key, jnp.zeros(small), jnp.zeros(small))
        compile_s, best = _time(lambda p, a, b, m=model: m.apply(p, a, b), (params, y1, y2), runs)
        rows.append(
          f"| {name.upper() if name != 'ifcnn' else 'IFCNN'} | {dtype} | {batch} | {compile_s:.1f} | "
          f"{best:.4f} | {batch / best:.1f} |"
        )
  return rows


def training_section(smoke: bool, steps: int, budget) -> list[str]:
  import train_benchmark
  from fusionjax import data
  from fusionjax.data import sample_pairs

  rows = [
    "| stage | batch | s / step | crops / s | compile s | temp MiB | loss | pipeline batches / s |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for stage in tasks.STAGES:
    if budget.left < 0:
      rows.append(f"| {stage} | skipped: time budget spent | | | | | | |")
      continue
    r = train_benchmark.benchmark_stage(
      stage,
      steps=steps,
      batch_size=2 if smoke else None,
      patch_size=32 if smoke else None,
      model_name=None,
      config_arg="smoke" if smoke else None,
    )
    config = data.default_data_config(stage)
    config.data_dir = str(sample_pairs.samples_dir())
    config.batch_size, config.patch_size = r["batch_size"], r["patch_size"]
    source = data.make_training_source(stage, config)
    source.batch(0)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < (1.0 if smoke else 5.0):
      n += 1
      source.batch(n)
    rate = n / (time.perf_counter() - start)
    source.close()
    rows.append(
      f"| {stage} | {r['batch_size']}×{r['patch_size']}² | {r['sec_per_step']:.3f} | "
      f"{r['batch_size'] * r['steps_per_sec']:.1f} | {r['compile_s']:.0f} | {r['temp_mib']:.0f} | "
      f"{r['loss']:.4f} | {rate:.1f} |"
    )
  return rows


def memory_section(size, batch, iterations, width, budget) -> list[str]:
  from models_benchmark import train_step_temp_mib

  rows = ["| iterations | FRUFN temp MiB | EFRUFN temp MiB |", "|---:|---:|---:|"]
  heads = 4 if width >= 32 else 2
  for n in iterations:
    if budget.left < 0:
      rows.append(f"| {n} | skipped: time budget spent | |")
      continue
    temps = [
      train_step_temp_mib(name, n, size, batch, width, heads) for name in ("frufn", "efrufn")
    ]
    rows.append(f"| {n} | {temps[0]:.1f} | {temps[1]:.1f} |")
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--out", default="gpu_check.md")
  parser.add_argument("--cpu_smoke", action="store_true", help="tiny sizes on the CPU")
  parser.add_argument(
    "--budget_s",
    type=float,
    default=None,
    help="stop starting new measurements after this (default 420 s; no limit with --cpu_smoke)",
  )
  args = parser.parse_args(argv)
  smoke = args.cpu_smoke
  budget = Budget(
    args.budget_s if args.budget_s is not None else (float("inf") if smoke else 420.0)
  )
  size = (32, 48) if smoke else (224, 448)
  width = 8 if smoke else 32
  start = time.perf_counter()
  devices = jax.devices()
  lines = [
    f"# Accelerator check: {devices[0].device_kind} ({devices[0].platform}, {len(devices)} device(s)), "
    f"JAX {jax.__version__}",
    "",
    f"`bash benchmarks/gpu_check.sh{' --cpu-smoke' if smoke else ''}`, {datetime.date.today().isoformat()}"
    + (
      " — CPU smoke run at tiny sizes: the numbers test the script, not the hardware."
      if smoke
      else ""
    ),
    "",
  ]
  lines += [
    f"## Inference latency ({size[0]}x{size[1]}, width {width}, EFRUFN 5 iterations, FRUFN N = 5)",
    "",
  ]
  lines += latency_section(size, (1,) if smoke else (1, 8), 1 if smoke else 10, width, budget)
  lines += ["", "## Training step (full configs" + (", smoke sizes" if smoke else "") + ")", ""]
  lines += training_section(smoke, 1 if smoke else 5, budget)
  lines += [
    "",
    "Pipeline: the stage's training input on the shipped sample images, one thread, same batch shape.",
    "",
    "## Training memory vs iterations (paper Fig. 13)",
    "",
  ]
  batch, side = (1, 32) if smoke else (4, 128)
  lines += memory_section(side, batch, (1, 2) if smoke else (1, 3, 5, 10, 20), width, budget)
  lines += [
    "",
    f"Gradient of an L2 loss, batch {batch}, {side}x{side}, width {width}; XLA's temporary buffer size.",
    "",
    f"Total wall time {time.perf_counter() - start:.0f} s.",
  ]
  text = "\n".join(lines) + "\n"
  Path(args.out).write_text(text)
  print(text)


if __name__ == "__main__":
  main()
