"""Benchmarks of ``fusionjax.deq``: solver speed and the memory of the gradient step.

Prints three Markdown tables:

1. Forward solvers: Anderson acceleration, limited-memory Broyden and plain fixed-point
   iteration, iterations and wall time to reach a relative residual of 1e-5 on maps
   whose Jacobian has spectral radius 0.5, 0.9 and 0.99 (an affine map ``z -> A z + b``
   with a random symmetric ``A`` of that spectral radius, and the same matrix inside
   ``z -> tanh(A z + b)`` with a small ``b`` so that tanh stays near its linear range),
   dimension 256.
2. Gradients: forward solver and backward mode (the implicit gradient with the adjoint
   solved by iteration or by GMRES, and JFB for scale) on the affine maps, whose
   gradient has a closed form: for the loss ``c . z*``, ``dL/db = (I - A)^-T c``. The
   table gives forward and adjoint iterations, the time of the compiled
   ``value_and_grad`` step, and the relative error of ``dL/db`` against the float64
   closed form. The last rows use a map that is not contractive (eigenvalues of ``A``
   in [-1.5, 0.9], so ``I - A`` stays positive definite): iterating the adjoint
   diverges there (the gradient is NaN by design), GMRES does not.
3. Memory: the compiled gradient step's temporary bytes
   (``jax.jit(grad_fn).lower(...).compile().memory_analysis().temp_size_in_bytes``)
   for 5, 20 and 50 solver iterations, for the DEQ (forward solve + JFB backward) and
   for the same iteration unrolled with ``lax.scan`` and differentiated by JAX, on a
   conv-like map with a state of shape (8, 64, 64, 16).

Run: ``python benchmarks/deq_benchmark.py`` (a few minutes on 2 CPU cores; ``--quick``
shrinks every part).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from fusionjax import deq


def symmetric_matrix(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
  """A random symmetric ``n x n`` matrix with spectral radius ``radius``."""
  a = rng.standard_normal((n, n))
  a = (a + a.T) / 2
  return a * (radius / np.max(np.abs(np.linalg.eigvalsh(a))))


def symmetric_with_spectrum(
  rng: np.random.Generator, n: int, low: float, high: float
) -> np.ndarray:
  """A random symmetric ``n x n`` matrix with eigenvalues spread evenly over ``[low, high]``."""
  q, _ = np.linalg.qr(rng.standard_normal((n, n)))
  return (q * np.linspace(low, high, n)) @ q.T


def affine_map(z, args):
  a, b = args
  return a @ z + b


def tanh_map(z, args):
  a, b = args
  return jnp.tanh(a @ z + b)


def time_solve(solve, args, repeats: int) -> tuple[deq.Solution, float]:
  """Runs a compiled solve once to warm up, then returns the solution and the median time."""
  solution = jax.block_until_ready(solve(args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(solve(args))
    times.append(time.perf_counter() - start)
  return solution, float(np.median(times))


def solver_table(dimension: int, radii: tuple[float, ...], repeats: int, seed: int) -> str:
  """Iterations and time to tolerance 1e-5, as a Markdown table."""
  rng = np.random.default_rng(seed)
  tol = 1e-5
  solvers = {
    "fixed-point iteration": deq.FixedPointIteration(max_iter=5000, tol=tol),
    "Anderson (jaxopt), m=5": deq.Anderson(
      history=5, max_iter=500, tol=tol, implementation="jaxopt"
    ),
    "Anderson (native), m=5": deq.Anderson(
      history=5, max_iter=500, tol=tol, implementation="native"
    ),
    "Broyden, memory=10": deq.Broyden(memory=10, max_iter=500, tol=tol),
    "Broyden, memory=20": deq.Broyden(memory=20, max_iter=500, tol=tol),
  }
  lines = [
    "| map | spectral radius | solver | iterations | converged | rel. residual | time (ms) |",
    "|---|---|---|---|---|---|---|",
  ]
  for map_name, fn in (("affine", affine_map), ("tanh", tanh_map)):
    for radius in radii:
      args = (
        jnp.asarray(symmetric_matrix(rng, dimension, radius), jnp.float32),
        # A small offset keeps tanh near its linear range, so its Jacobian keeps the radius.
        jnp.asarray(0.1 * rng.standard_normal(dimension), jnp.float32),
      )
      for name, solver in solvers.items():
        solve = jax.jit(
          lambda a, solver=solver, fn=fn: deq.fixed_point(
            fn, jnp.zeros(dimension), a, solver=solver
          )
        )
        solution, seconds = time_solve(solve, args, repeats)
        stats = solution.stats
        lines.append(
          f"| {map_name} | {radius} | {name} | {int(stats.num_steps)} | {bool(stats.converged)} "
          f"| {float(stats.rel_residual):.1e} | {1e3 * seconds:.2f} |"
        )
  return "\n".join(lines)


def gradient_table(dimension: int, radii: tuple[float, ...], repeats: int, seed: int) -> str:
  """Iterations, time and gradient error of forward/backward pairs on affine maps, as Markdown."""
  rng = np.random.default_rng(seed)
  forward = {
    "Anderson m=5": deq.Anderson(history=5, max_iter=500, tol=1e-6),
    "Broyden memory=10": deq.Broyden(memory=10, max_iter=500, tol=1e-6),
  }
  # Generous adjoint budgets, so that the table compares how the solves converge, not where they stop.
  backward = {
    "Implicit, iterate": deq.Implicit(max_iter=3000, tol=1e-6),
    "Implicit, GMRES (restart 20)": deq.Implicit(
      solver="gmres", max_iter=3000, tol=1e-6, restart=20
    ),
    "JFB": deq.JFB(),
  }
  lines = [
    "| A | forward | backward | forward iterations | adjoint iterations | adjoint result "
    "| grad step (ms) | rel. error of dL/db |",
    "|---|---|---|---|---|---|---|---|",
  ]
  problems = [(f"symmetric, radius {r}", symmetric_matrix(rng, dimension, r)) for r in radii]
  problems.append(
    ("eigenvalues in [-1.5, 0.9]", symmetric_with_spectrum(rng, dimension, -1.5, 0.9))
  )
  for label, a in problems:
    b = rng.standard_normal(dimension)
    c = rng.standard_normal(dimension)
    exact = np.linalg.solve((np.eye(dimension) - a).T, c)
    params = (jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    c32 = jnp.asarray(c, jnp.float32)
    for forward_name, solver in forward.items():
      for backward_name, mode in backward.items():

        def loss(params, solver=solver, mode=mode):
          sol = deq.fixed_point(
            affine_map, jnp.zeros(dimension), params, solver=solver, backward=mode
          )
          return jnp.dot(c32, sol.value), sol.stats

        step = jax.jit(jax.value_and_grad(loss, has_aux=True))
        ((_, stats), (_, grad_b)), seconds = time_solve(step, params, repeats)
        if isinstance(mode, deq.Implicit):
          adjoint = jax.jit(
            lambda p, z, mode=mode: deq.implicit_adjoint(affine_map, z, p, c32, backward=mode).stats
          )(params, jnp.asarray(np.linalg.solve(np.eye(dimension) - a, b), jnp.float32))
          adjoint_steps = str(int(adjoint.num_steps))
          adjoint_result = deq.RESULTS(int(adjoint.result)).name
        else:
          adjoint_steps, adjoint_result = "–", "–"
        error = np.linalg.norm(np.asarray(grad_b, np.float64) - exact) / np.linalg.norm(exact)
        lines.append(
          f"| {label} | {forward_name} | {backward_name} | {int(stats.num_steps)}"
          f"{'' if bool(stats.converged) else ' (not converged)'} | {adjoint_steps} | {adjoint_result} "
          f"| {1e3 * seconds:.2f} | {error:.1e} |"
        )
  return "\n".join(lines)


def conv_map(z, args):
  """A contractive conv layer ``z -> tanh(conv3x3(z, w) + x)`` on NHWC states."""
  w, x = args
  y = jax.lax.conv_general_dilated(z, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.tanh(y + x)


def temp_bytes(grad_fn, *args) -> int:
  """Temporary buffer bytes of the compiled ``grad_fn``."""
  return jax.jit(grad_fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def memory_table(shape: tuple[int, ...], iterations: tuple[int, ...], seed: int) -> str:
  """Temporary bytes of the gradient step, DEQ against unrolled, as a Markdown table."""
  rng = np.random.default_rng(seed)
  channels = shape[-1]
  w = rng.standard_normal((3, 3, channels, channels))
  # Scale so that the conv's operator norm is below one (the map contracts).
  w = jnp.asarray(0.9 * w / (np.sqrt(9 * channels) * 2.0), jnp.float32)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  z0 = jnp.zeros(shape, jnp.float32)

  def deq_grad(solver):
    def loss(w, x):
      return jnp.mean(
        deq.fixed_point(conv_map, z0, (w, x), solver=solver, backward=deq.JFB()).value ** 2
      )

    return jax.grad(loss)

  def unrolled_grad(steps):
    def loss(w, x):
      z, _ = jax.lax.scan(lambda z, _: (conv_map(z, (w, x)), None), z0, None, length=steps)
      return jnp.mean(z**2)

    return jax.grad(loss)

  state_mib = np.prod(shape) * 4 / 2**20
  lines = [
    f"State {shape} float32 ({state_mib:.1f} MiB). Temporary bytes of the compiled gradient step (MiB):",
    "",
    "| iterations | DEQ, plain iteration + JFB | DEQ, Anderson native (m=5) + JFB "
    "| DEQ, Anderson jaxopt (m=5) + JFB | DEQ, Broyden (memory=10) + JFB | unrolled (lax.scan) |",
    "|---|---|---|---|---|---|",
  ]
  for steps in iterations:
    # tol=0 makes the solvers run exactly `steps` iterations, like the unrolled loop.
    plain = temp_bytes(deq_grad(deq.FixedPointIteration(max_iter=steps, tol=0.0)), w, x)
    native = temp_bytes(deq_grad(deq.Anderson(max_iter=steps, tol=0.0)), w, x)
    with_jaxopt = temp_bytes(
      deq_grad(deq.Anderson(max_iter=steps, tol=0.0, implementation="jaxopt")), w, x
    )
    broyden = temp_bytes(deq_grad(deq.Broyden(max_iter=steps, tol=0.0, memory=10)), w, x)
    unrolled = temp_bytes(unrolled_grad(steps), w, x)
    lines.append(
      f"| {steps} | {plain / 2**20:.1f} | {native / 2**20:.1f} | {with_jaxopt / 2**20:.1f} "
      f"| {broyden / 2**20:.1f} | {unrolled / 2**20:.1f} |"
    )
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="smaller problems, fewer repeats")
  parser.add_argument("--seed", type=int, default=0)
  flags = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, seed {flags.seed}\n")
  dimension, repeats = (64, 3) if flags.quick else (256, 10)
  print(solver_table(dimension, (0.5, 0.9, 0.99), repeats, flags.seed))
  print()
  print(gradient_table(dimension, (0.5, 0.9, 0.99), repeats, flags.seed))
  print()
  shape = (2, 32, 32, 8) if flags.quick else (8, 64, 64, 16)
  print(memory_table(shape, (5, 20, 50), flags.seed))


if __name__ == "__main__":
  main()
