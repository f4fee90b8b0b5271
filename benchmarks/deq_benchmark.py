"""Benchmarks of ``fusionjax.deq``: solver speed and the memory of the gradient step.

Prints two Markdown tables:

1. Anderson acceleration against plain fixed-point iteration: iterations and wall time
   to reach a relative residual of 1e-5 on maps whose Jacobian has spectral radius 0.5,
   0.9 and 0.99 (an affine map ``z -> A z + b`` with a random symmetric ``A`` of that
   spectral radius, and the same matrix inside ``z -> tanh(A z + b)`` with a small ``b``
   so that tanh stays near its linear range), dimension 256.
2. Memory: the compiled gradient step's temporary bytes
   (``jax.jit(grad_fn).lower(...).compile().memory_analysis().temp_size_in_bytes``)
   for 5, 20 and 50 solver iterations, for the DEQ (forward solve + JFB backward) and
   for the same iteration unrolled with ``lax.scan`` and differentiated by JAX, on a
   conv-like map with a state of shape (8, 64, 64, 16).

Run: ``python benchmarks/deq_benchmark.py`` (about a minute or two on 2 CPU cores;
``--quick`` shrinks both parts).
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
        "Anderson (jaxopt), m=5": deq.Anderson(history=5, max_iter=500, tol=tol, implementation="jaxopt"),
        "Anderson (native), m=5": deq.Anderson(history=5, max_iter=500, tol=tol, implementation="native"),
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
                solve = jax.jit(lambda a, solver=solver, fn=fn: deq.fixed_point(fn, jnp.zeros(dimension), a, solver=solver))
                solution, seconds = time_solve(solve, args, repeats)
                stats = solution.stats
                lines.append(
                    f"| {map_name} | {radius} | {name} | {int(stats.num_steps)} | {bool(stats.converged)} "
                    f"| {float(stats.rel_residual):.1e} | {1e3 * seconds:.2f} |"
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
            return jnp.mean(deq.fixed_point(conv_map, z0, (w, x), solver=solver, backward=deq.JFB()).value ** 2)

        return jax.grad(loss)

    def unrolled_grad(steps):
        def loss(w, x):
            z, _ = jax.lax.scan(lambda z, _: (conv_map(z, (w, x)), None), z0, None, length=steps)
            return jnp.mean(z ** 2)

        return jax.grad(loss)

    state_mib = np.prod(shape) * 4 / 2**20
    lines = [
        f"State {shape} float32 ({state_mib:.1f} MiB). Temporary bytes of the compiled gradient step (MiB):",
        "",
        "| iterations | DEQ, plain iteration + JFB | DEQ, Anderson native (m=5) + JFB "
        "| DEQ, Anderson jaxopt (m=5) + JFB | unrolled (lax.scan) |",
        "|---|---|---|---|---|",
    ]
    for steps in iterations:
        # tol=0 makes the solvers run exactly `steps` iterations, like the unrolled loop.
        plain = temp_bytes(deq_grad(deq.FixedPointIteration(max_iter=steps, tol=0.0)), w, x)
        native = temp_bytes(deq_grad(deq.Anderson(max_iter=steps, tol=0.0)), w, x)
        with_jaxopt = temp_bytes(deq_grad(deq.Anderson(max_iter=steps, tol=0.0, implementation="jaxopt")), w, x)
        unrolled = temp_bytes(unrolled_grad(steps), w, x)
        lines.append(
            f"| {steps} | {plain / 2**20:.1f} | {native / 2**20:.1f} | {with_jaxopt / 2**20:.1f} "
            f"| {unrolled / 2**20:.1f} |"
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
    shape = (2, 32, 32, 8) if flags.quick else (8, 64, 64, 16)
    print(memory_table(shape, (5, 20, 50), flags.seed))


if __name__ == "__main__":
    main()
