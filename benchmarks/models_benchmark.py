"""Size, cost and training memory of FRUFN and EFRUFN next to the paper (Table 5, Fig. 13/14).

Prints three Markdown tables:

1. Parameters of the default configuration and the ablation variants (paper: FRUFN 0.864 M,
   EFRUFN 0.236 M).
2. FLOPs and CPU latency of the forward pass at 224x448, batch 1 (paper Table 5, PyTorch on a
   GPU: FRUFN 130.22 GFLOPs / 0.333 s, EFRUFN 148.71 GFLOPs / 0.356 s). XLA's
   ``cost_analysis`` counts a loop body once, so the totals are assembled from separately
   compiled pieces: ``fixed`` (Tθ1, Tθ2, Tθ3⁻¹, padding), one UF unit, and for EFRUFN one
   solver step's overhead, times the iterations actually run.
3. Temporary memory of a compiled training step (gradient of an L2 loss; what XLA reports as
   ``temp_size_in_bytes``) against the number of iterations: FRUFN's N, EFRUFN's ``max_iter``
   (paper Fig. 13: FRUFN grows linearly, EFRUFN stays flat).

Usage (the defaults take a while on a CPU; the flags shrink it):

    python benchmarks/models_benchmark.py
    python benchmarks/models_benchmark.py --height 64 --width 96 --iterations 1,3 --latency_runs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fusionjax import models  # noqa: E402
from fusionjax.evaluation import cost  # noqa: E402
from fusionjax.models import padding  # noqa: E402
from fusionjax.models import stats as solver_stats  # noqa: E402
from fusionjax.models.unfolding import UFUnit  # noqa: E402

PAPER_PARAMS = {"frufn": 0.864e6, "efrufn": 0.236e6}
PAPER_GFLOPS = {"frufn": 130.22, "efrufn": 148.71}
PAPER_SECONDS = {"frufn": 0.333, "efrufn": 0.356}


def _init(model, shape):
  """Initial parameters (the non-partitionable threefry compiles much faster on CPU)."""
  y = jnp.full(shape, 0.5, jnp.float32)
  with jax.threefry_partitionable(False):
    return jax.jit(model.init)(jax.random.PRNGKey(0), y, y)


def parameter_table(width: int) -> str:
  """Markdown table of parameter counts (no compilation: ``eval_shape``)."""
  rows = ["| model | variant | N / max_iter | parameters | paper |", "|---|---|---|---|---|"]
  y = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
  cases = [("frufn", "full", n) for n in (1, 3, 5)] + [
    ("frufn", "shared", 5),
    ("frufn", "no_unfold", 5),
    ("frufn", "no_mask", 5),
    ("efrufn", "full", 5),
    ("efrufn", "full", 20),
    ("efrufn", "no_mask", 5),
  ]
  for name, variant, n in cases:
    config = dict(name=name, variant=variant, width=width, num_units=n, max_iter=n)
    model = models.create_model(config)
    count = cost.count_parameters(jax.eval_shape(model.init, jax.random.PRNGKey(0), y, y)["params"])
    paper = ""
    if width == 32 and variant == "full" and (name == "efrufn" or n == 5):
      paper = f"{PAPER_PARAMS[name] / 1e6:.3f} M ({count / PAPER_PARAMS[name] - 1:+.1%})"
    rows.append(f"| {name.upper()} | {variant} | {n} | {count:,} | {paper} |")
  return "\n".join(rows)


def cost_table(height: int, width: int, model_width: int, runs: int) -> str:
  """Markdown table of FLOPs and CPU latency of the forward pass."""
  shape = (1, height, width, 1)
  key = jax.random.PRNGKey(1)
  y1 = jax.random.uniform(key, shape)
  y2 = jax.random.uniform(jax.random.fold_in(key, 1), shape)
  multiple = padding.required_multiple((2, 4), (1, 2, 4, 8))
  hp, wp = padding.padded_size(height, multiple), padding.padded_size(width, multiple)

  # One UF unit at the padded size.
  unit = UFUnit(**models.create_model(dict(name="frufn", width=model_width)).unit_kwargs())
  feats = jax.ShapeDtypeStruct((1, hp, wp, model_width), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, hp, wp, 1), jnp.float32)
  unit_vars = jax.eval_shape(unit.init, jax.random.PRNGKey(0), feats, feats, mask, feats)
  unit_flops = cost.xla_flops(
    jax.jit(unit.apply).lower(unit_vars, feats, feats, mask, feats).compile()
  )

  rows = [
    "| model | iterations | GFLOPs (XLA) | of which UF units | CPU latency (s) | "
    "compile (s) | paper GFLOPs | paper latency (s, GPU) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  fixed = None
  for name in ("frufn", "efrufn"):
    model = models.create_model(dict(name=name, width=model_width, num_units=5, max_iter=5))
    variables = _init(model, (1, 8, 8, 1))
    apply = jax.jit(lambda v, a, b, m=model: m.apply(v, a, b, mutable=["intermediates"]))
    start = time.perf_counter()
    compiled = apply.lower(variables, y1, y2).compile()
    compile_s = time.perf_counter() - start
    program_flops = cost.xla_flops(compiled)  # Loop bodies counted once.
    fused, aux = compiled(variables, y1, y2)
    jax.block_until_ready(fused)
    times = []
    for _ in range(runs):
      start = time.perf_counter()
      jax.block_until_ready(compiled(variables, y1, y2))
      times.append(time.perf_counter() - start)
    if name == "frufn":
      iterations = model.num_units
      fixed = program_flops - unit_flops
      total = fixed + iterations * unit_flops
    else:
      iterations = int(solver_stats.find_solver_stats(aux["intermediates"]).num_steps[0])
      per_step = program_flops - fixed  # One unit plus one Anderson update.
      total = fixed + iterations * per_step
    rows.append(
      f"| {name.upper()} | {iterations} | {total / 1e9:.2f} | "
      f"{iterations * unit_flops / 1e9:.2f} | {statistics.median(times):.3f} | {compile_s:.0f} | "
      f"{PAPER_GFLOPS[name]} | {PAPER_SECONDS[name]} |"
    )
  note = (
    f"\nInput {height}x{width} (padded to {hp}x{wp}), batch 1, width {model_width}; one UF "
    f"unit: {unit_flops / 1e9:.2f} GFLOPs; Tθ1 + Tθ2 + Tθ3⁻¹ + padding: "
    f"{fixed / 1e9:.2f} GFLOPs. Latency: median of {runs} jitted runs on "
    f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores)."
  )
  return "\n".join(rows) + "\n" + note


def train_step_temp_mib(
  name: str, iterations: int, size: int, batch: int, model_width: int, num_heads: int | None = None
) -> float:
  """XLA's temporary memory (MiB) of a compiled training step (gradient of an L2 loss).

  Args:
    name: 'frufn' (``iterations`` = N) or 'efrufn' (``iterations`` = max_iter, always all run).
    iterations: unrolled units or solver iterations.
    size: image side.
    batch: batch size.
    model_width: feature channels.
    num_heads: attention heads (default: the model config's).

  Returns:
    ``temp_size_in_bytes / 2**20`` of the compiled step.
  """
  image = jax.ShapeDtypeStruct((batch, size, size, 1), jnp.float32)
  config = dict(name=name, width=model_width, num_units=iterations, max_iter=iterations, tol=0.0)
  if num_heads is not None:
    config["num_heads"] = num_heads
  model = models.create_model(config)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), image, image)["params"]

  def loss(p, a, b, target):
    return jnp.mean(jnp.square(model.apply({"params": p}, a, b) - target))

  compiled = jax.jit(jax.grad(loss)).lower(params, image, image, image).compile()
  return compiled.memory_analysis().temp_size_in_bytes / 2**20


def memory_table(size: int, batch: int, iterations, model_width: int) -> str:
  """Markdown table of compiled training-step temporary memory against iterations."""
  rows = ["| iterations | FRUFN temp (MiB) | EFRUFN temp (MiB) |", "|---|---|---|"]
  for n in iterations:
    temps = [train_step_temp_mib(name, n, size, batch, model_width) for name in ("frufn", "efrufn")]
    rows.append(f"| {n} | {temps[0]:.1f} | {temps[1]:.1f} |")
  note = (
    f"\nTraining step = gradient of an L2 loss, input {batch}x{size}x{size}, width "
    f"{model_width}, compiled by XLA for {jax.devices()[0].platform.upper()}. Paper Fig. 13 "
    "(batch 4, GPU): FRUFN linear in N, EFRUFN constant."
  )
  return "\n".join(rows) + "\n" + note


def main(argv=None) -> None:
  """Parses the flags and prints the tables."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--height", type=int, default=224, help="Latency/FLOPs input height.")
  parser.add_argument("--width", type=int, default=448, help="Latency/FLOPs input width.")
  parser.add_argument("--model_width", type=int, default=32, help="Feature channels.")
  parser.add_argument("--latency_runs", type=int, default=5, help="Timed forward passes.")
  parser.add_argument("--memory_size", type=int, default=64, help="Memory-table image side.")
  parser.add_argument("--memory_batch", type=int, default=1, help="Memory-table batch size.")
  parser.add_argument(
    "--iterations",
    default="1,3,5,10,20",
    help="Comma-separated N (FRUFN) / max_iter (EFRUFN) for the memory table.",
  )
  parser.add_argument("--skip_cost", action="store_true", help="Skip the FLOPs/latency table.")
  parser.add_argument("--skip_memory", action="store_true", help="Skip the memory table.")
  args = parser.parse_args(argv)
  iterations = [int(n) for n in args.iterations.split(",") if n]

  print("## Parameters\n")
  print(parameter_table(args.model_width), flush=True)
  if not args.skip_cost:
    print(f"\n## FLOPs and latency ({args.height}x{args.width})\n")
    print(cost_table(args.height, args.width, args.model_width, args.latency_runs), flush=True)
  if not args.skip_memory:
    print(
      f"\n## Training-step memory vs iterations "
      f"({args.memory_batch}x{args.memory_size}x{args.memory_size})\n"
    )
    print(
      memory_table(args.memory_size, args.memory_batch, iterations, args.model_width), flush=True
    )


if __name__ == "__main__":
  main()
