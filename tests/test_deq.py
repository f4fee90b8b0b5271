"""Tests of the standalone DEQ solver ``fusionjax.deq``.

Every test draws fresh random inputs; the seed is printed (pytest shows it on failure)
and can be fixed with ``DEQ_TEST_SEED=<int>`` to reproduce a run.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusionjax import deq

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SOLVERS_X64 = {
    "anderson-jaxopt": deq.Anderson(max_iter=300, tol=1e-12, implementation="jaxopt"),
    "anderson-native": deq.Anderson(max_iter=300, tol=1e-12, implementation="native"),
    "fixed-point": deq.FixedPointIteration(max_iter=600, tol=1e-12),
    "damped": deq.FixedPointIteration(max_iter=900, tol=1e-12, damping=0.7),
}


@pytest.fixture
def rng():
    seed = int(os.environ.get("DEQ_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
    print(f"DEQ_TEST_SEED={seed}")
    return np.random.default_rng(seed)


def contractive_matrix(rng, n, radius):
    """A random n x n matrix with spectral norm ``radius`` (so the affine map contracts)."""
    a = rng.standard_normal((n, n))
    return a * (radius / np.linalg.norm(a, 2))


def affine(z, args):
    a, b = args
    return a @ z + b


def tanh_map(z, args):
    w, u, b, x = args
    return jnp.tanh(w @ z + u @ x + b)


# ---------------------------------------------------------------- affine maps, float64


@pytest.mark.parametrize("name", sorted(SOLVERS_X64))
def test_affine_value_is_the_linear_solve(rng, name):
    n = 7
    a = contractive_matrix(rng, n, 0.6)
    b = rng.standard_normal(n)
    with jax.enable_x64(True):
        sol = deq.fixed_point(affine, jnp.zeros(n), (jnp.asarray(a), jnp.asarray(b)), solver=SOLVERS_X64[name])
        expected = np.linalg.solve(np.eye(n) - a, b)
        assert sol.value.dtype == jnp.float64
        np.testing.assert_allclose(sol.value, expected, rtol=1e-9, atol=1e-10)
        assert bool(sol.stats.converged) and bool(sol.stats.finite)
        assert float(sol.stats.rel_residual) <= 1e-12
        assert 1 <= int(sol.stats.num_steps) < SOLVERS_X64[name].max_iter


def test_stats_report_the_last_update(rng):
    # With tol=0 plain iteration runs exactly max_iter steps: value = f^k(z0), residual = |f^k - f^(k-1)|.
    n, k = 6, 4
    a = contractive_matrix(rng, n, 0.8)
    b = rng.standard_normal(n)
    z0 = rng.standard_normal(n)
    with jax.enable_x64(True):
        sol = deq.fixed_point(
            affine, jnp.asarray(z0), (jnp.asarray(a), jnp.asarray(b)),
            solver=deq.FixedPointIteration(max_iter=k, tol=0.0),
        )
        iterates = [z0]
        for _ in range(k):
            iterates.append(a @ iterates[-1] + b)
        step = np.linalg.norm(iterates[-1] - iterates[-2])
        np.testing.assert_allclose(sol.value, iterates[-1], rtol=1e-12)
        np.testing.assert_allclose(sol.stats.abs_residual, step, rtol=1e-10)
        np.testing.assert_allclose(sol.stats.rel_residual, step / np.linalg.norm(iterates[-1]), rtol=1e-10)
        assert int(sol.stats.num_steps) == k
        assert not bool(sol.stats.converged) and bool(sol.stats.finite)


def test_implicit_gradient_of_affine_map_is_closed_form(rng):
    n = 5
    a = contractive_matrix(rng, n, 0.7)
    b = rng.standard_normal(n)
    c = rng.standard_normal(n)
    backward = deq.Implicit(max_iter=400, tol=1e-13)
    with jax.enable_x64(True):
        @jax.jit
        def run(params, c):
            def loss(params):
                sol = deq.fixed_point(affine, jnp.zeros(n), params, solver=SOLVERS_X64["anderson-native"], backward=backward)
                return jnp.dot(c, sol.value), sol.value

            grads, z_star = jax.grad(loss, has_aux=True)(params)
            adjoint = deq.implicit_adjoint(affine, z_star, params, c, backward=backward)
            short = deq.implicit_adjoint(affine, z_star, params, c, backward=deq.Implicit(max_iter=2, tol=1e-13))
            return grads, adjoint, short

        (grad_a, grad_b), adjoint, short = run((jnp.asarray(a), jnp.asarray(b)), jnp.asarray(c))
        z_star = np.linalg.solve(np.eye(n) - a, b)
        u = np.linalg.solve((np.eye(n) - a).T, c)
        np.testing.assert_allclose(grad_b, u, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(grad_a, np.outer(u, z_star), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(adjoint.value, u, rtol=1e-9, atol=1e-11)
        assert bool(adjoint.stats.converged) and float(adjoint.stats.rel_residual) <= 1e-13
        assert not bool(short.stats.converged) and int(short.stats.num_steps) == 2


def test_jfb_is_one_vjp_at_the_stopped_fixed_point(rng):
    n, m = 6, 4
    with jax.enable_x64(True):
        args = (
            jnp.asarray(contractive_matrix(rng, n, 0.5)),
            jnp.asarray(rng.standard_normal((n, m))),
            jnp.asarray(rng.standard_normal(n)),
            jnp.asarray(rng.standard_normal(m)),
        )
        c = jnp.asarray(rng.standard_normal(n))
        solver = deq.FixedPointIteration(max_iter=30, tol=1e-8)

        @jax.jit
        def run(args, c):
            def loss(p):
                value = deq.fixed_point(tanh_map, jnp.zeros(n), p, solver=solver, backward=deq.JFB()).value
                return jnp.dot(c, value), value

            grads, value = jax.grad(loss, has_aux=True)(args)
            _, pullback = jax.vjp(lambda p: tanh_map(jax.lax.stop_gradient(value), p), args)
            return grads, pullback(c)[0]

        grads, expected = run(args, c)
        for got, want in zip(grads, expected):
            np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("steps,damping", [(1, 1.0), (3, 0.6)])
def test_phantom_is_the_unrolled_damped_loop(rng, steps, damping):
    n = 5
    a = jnp.asarray(contractive_matrix(rng, n, 0.6))
    b = jnp.asarray(rng.standard_normal(n))
    c = jnp.asarray(rng.standard_normal(n))
    with jax.enable_x64(True):
        a, b, c = (x.astype(jnp.float64) for x in (a, b, c))
        # Stop short of convergence so that the unrolled steps from z* still differ from z*.
        solver = deq.FixedPointIteration(max_iter=6, tol=0.0)
        z_star = deq.fixed_point(affine, jnp.zeros(n), (a, b), solver=solver).value

        @jax.jit
        @jax.grad
        def phantom_grad(p):
            return jnp.dot(c, deq.fixed_point(affine, jnp.zeros(n), p, solver=solver, backward=deq.Phantom(steps, damping)).value)

        def unrolled_loss(p):
            z = jax.lax.stop_gradient(z_star)
            for _ in range(steps):
                z = (1 - damping) * z + damping * affine(z, p)
            return jnp.dot(c, z)

        phantom = phantom_grad((a, b))
        for got, want in zip(phantom, jax.jit(jax.grad(unrolled_loss))((a, b))):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        if (steps, damping) == (1, 1.0):
            # The default backward (JFB) is the one-step, undamped phantom gradient.
            jfb = jax.jit(jax.grad(lambda p: jnp.dot(c, deq.fixed_point(affine, jnp.zeros(n), p, solver=solver).value)))((a, b))
            for got, want in zip(phantom, jfb):
                np.testing.assert_allclose(got, want, rtol=1e-14)


def test_implicit_gradient_of_tanh_map_matches_finite_differences(rng):
    n, m = 6, 4
    with jax.enable_x64(True):
        args = (
            jnp.asarray(contractive_matrix(rng, n, 0.7)),
            jnp.asarray(rng.standard_normal((n, m))),
            jnp.asarray(rng.standard_normal(n)),
            jnp.asarray(rng.standard_normal(m)),
        )
        c = jnp.asarray(rng.standard_normal(n))
        solver = deq.FixedPointIteration(max_iter=500, tol=1e-14)
        backward = deq.Implicit(max_iter=300, tol=1e-14, solver=deq.Anderson(implementation="native"))

        def loss(p):
            sol = deq.fixed_point(tanh_map, jnp.zeros(n), p, solver=solver, backward=backward)
            return jnp.dot(c, sol.value)

        grads = jax.jit(jax.grad(loss))(args)
        loss = jax.jit(loss)
        eps = 1e-6
        for _ in range(3):
            direction = tuple(jnp.asarray(rng.standard_normal(x.shape)) for x in args)
            plus = tuple(x + eps * d for x, d in zip(args, direction))
            minus = tuple(x - eps * d for x, d in zip(args, direction))
            finite_difference = (loss(plus) - loss(minus)) / (2 * eps)
            analytic = sum(jnp.vdot(g, d) for g, d in zip(grads, direction))
            np.testing.assert_allclose(analytic, finite_difference, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- pytree, batch, dtype


def coupled_map(z, args):
    """A contractive map on a pair (F, M) of different shapes, per element along axis 0."""
    feature, mask = z
    w, p, x = args
    mixed = jnp.tanh(0.5 * feature @ w + mask * p + x)
    new_mask = jax.nn.sigmoid(jnp.mean(feature, axis=-1, keepdims=True))
    return mixed.astype(feature.dtype), new_mask.astype(mask.dtype)


def coupled_problem(rng, batch=3, height=5, width=3, channels=6):
    w = contractive_matrix(rng, channels, 0.8)
    p = rng.standard_normal(channels)
    x = rng.standard_normal((batch, height, width, channels))
    z0 = (np.zeros((batch, height, width, channels), np.float32), np.zeros((batch, height, width, 1), np.float32))
    args = tuple(jnp.asarray(v, jnp.float32) for v in (w, p, x))
    return jax.tree_util.tree_map(jnp.asarray, z0), args


def test_pytree_state_batched_equals_separate_solves(rng):
    # Native Anderson weighs each element separately, so a batched solve equals separate solves.
    solver = deq.Anderson(implementation="native", tol=1e-6)
    z0, args = coupled_problem(rng)
    solve = jax.jit(lambda z, a: deq.fixed_point(coupled_map, z, a, solver=solver, batch_axis=0))
    batched = solve(z0, args)
    assert batched.stats.num_steps.shape == (3,)
    assert batched.value[0].shape == (3, 5, 3, 6) and batched.value[1].shape == (3, 5, 3, 1)
    assert bool(jnp.all(batched.stats.converged))
    for i in range(3):
        single = solve(tuple(z[i:i + 1] for z in z0), (args[0], args[1], args[2][i:i + 1]))
        for got, want in zip(batched.value, single.value):
            np.testing.assert_allclose(got[i:i + 1], want, rtol=1e-5, atol=1e-6)
        assert int(batched.stats.num_steps[i]) == int(single.stats.num_steps[0])
        # Near float32 round-off the residuals agree only roughly; both meet the tolerance.
        np.testing.assert_allclose(batched.stats.rel_residual[i], single.stats.rel_residual[0], rtol=0.1, atol=1e-7)


def test_pytree_state_with_a_non_leading_batch_axis(rng):
    # Leaves (5, 3, 4) and (2, 3): three problems along axis 1.
    w = jnp.asarray(contractive_matrix(rng, 4, 0.6), jnp.float32)
    x = jnp.asarray(rng.standard_normal((5, 3, 4)), jnp.float32)

    def f(z, args):
        big, small = z
        w, x = args
        new_big = jnp.tanh(big @ w + x + jnp.mean(small, axis=0)[None, :, None])
        new_small = 0.5 * jnp.tanh(jnp.stack([jnp.mean(big, axis=(0, 2)), jnp.max(big, axis=(0, 2))]))
        return new_big, new_small

    z0 = (jnp.zeros((5, 3, 4)), jnp.zeros((2, 3)))
    sol = jax.jit(lambda z, a: deq.fixed_point(f, z, a, solver=deq.FixedPointIteration(tol=1e-5), batch_axis=1))(z0, (w, x))
    assert sol.stats.rel_residual.shape == (3,)
    assert bool(jnp.all(sol.stats.converged))
    residual = jax.tree_util.tree_map(lambda a, b: a - b, f(sol.value, (w, x)), sol.value)
    for i in range(3):
        num = np.sqrt(sum(np.sum(np.asarray(r)[(slice(None), i)] ** 2) for r in residual))
        den = np.sqrt(sum(np.sum(np.asarray(v)[(slice(None), i)] ** 2) for v in sol.value))
        # The returned value is f(z); its own residual is at most the reported one (contraction).
        assert num / den <= 1.01 * float(sol.stats.rel_residual[i]) + 1e-6


def test_bfloat16_state(rng):
    z0, args = coupled_problem(rng, batch=2, height=4, width=7, channels=8)
    z0_bf16 = tuple(z.astype(jnp.bfloat16) for z in z0)

    def grad_fn(solver):
        def loss(a, z):
            sol = deq.fixed_point(coupled_map, z, a, solver=solver)
            return jnp.sum(sol.value[0].astype(jnp.float32) ** 2), sol

        return jax.jit(jax.grad(loss, has_aux=True))

    grads_f32, sol_f32 = grad_fn(deq.FixedPointIteration(tol=1e-6))(args, z0)
    grads_bf16, sol_bf16 = grad_fn(deq.Anderson(tol=2e-2))(args, z0_bf16)
    with_jaxopt = jax.jit(lambda z, a: deq.fixed_point(coupled_map, z, a, solver=deq.Anderson(tol=2e-2, implementation="jaxopt")))
    assert bool(sol_f32.stats.converged)
    for sol in (sol_bf16, with_jaxopt(z0_bf16, args)):
        assert sol.value[0].dtype == jnp.bfloat16 and sol.value[1].dtype == jnp.bfloat16
        assert sol.stats.rel_residual.dtype == jnp.float32
        assert bool(sol.stats.converged) and bool(sol.stats.finite)
        for got, want in zip(sol.value, sol_f32.value):
            np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=5e-2)
    for got, want in zip(grads_bf16, grads_f32):
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=0.1, atol=0.1 * float(jnp.max(jnp.abs(want))))


def test_vmap_over_independent_problems(rng):
    n, count = 5, 3
    a = np.stack([contractive_matrix(rng, n, r) for r in (0.3, 0.6, 0.9)])
    b = rng.standard_normal((count, n))
    c = rng.standard_normal(n)
    with jax.enable_x64(True):
        # jaxopt's update under vmap (its lax.cond becomes a select).
        solver = deq.Anderson(max_iter=200, tol=1e-12, implementation="jaxopt")

        def loss(params):
            sol = deq.fixed_point(affine, jnp.zeros(n), params, solver=solver, backward=deq.Implicit(max_iter=500, tol=1e-12))
            return jnp.dot(jnp.asarray(c), sol.value), sol

        run = jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))
        (_, sols), (grad_a, grad_b) = run((jnp.asarray(a), jnp.asarray(b)))
        assert sols.stats.num_steps.shape == (count,)
        for i in range(count):
            eye = np.eye(n)
            np.testing.assert_allclose(sols.value[i], np.linalg.solve(eye - a[i], b[i]), rtol=1e-9, atol=1e-10)
            np.testing.assert_allclose(grad_b[i], np.linalg.solve((eye - a[i]).T, c), rtol=1e-8, atol=1e-10)
        # Harder problems need more iterations, and each problem reports its own count.
        assert int(sols.stats.num_steps[0]) < int(sols.stats.num_steps[2])


def test_pmap_over_two_cpu_devices():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from fusionjax import deq
        assert jax.local_device_count() == 2, jax.devices()
        rng = np.random.default_rng(SEED)
        a = rng.standard_normal((2, 4, 4)); a *= 0.5 / np.linalg.norm(a, 2, axis=(1, 2))[:, None, None]
        b = rng.standard_normal((2, 4))
        c = rng.standard_normal(4)
        def f(z, args):
            return args[0] @ z + args[1]
        def step(params):
            def loss(p):
                sol = deq.fixed_point(f, jnp.zeros(4), p, solver=deq.Anderson(tol=1e-6),
                                      backward=deq.Implicit(tol=1e-7))
                return jnp.dot(jnp.asarray(c, jnp.float32), sol.value), sol.value
            grads, value = jax.grad(loss, has_aux=True)(params)
            return value, grads, jax.lax.pmean(grads[1], "devices")
        params = (jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
        values, (grad_a, grad_b), mean_grad_b = jax.pmap(step, axis_name="devices")(params)
        for i in range(2):
            z_star = np.linalg.solve(np.eye(4) - a[i], b[i])
            u = np.linalg.solve((np.eye(4) - a[i]).T, c)
            np.testing.assert_allclose(values[i], z_star, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(grad_b[i], u, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(grad_a[i], np.outer(u, z_star), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(mean_grad_b[i], grad_b.mean(0), rtol=1e-6)
        print("PMAP_OK")
        """
    ).replace("SEED", str(int(np.random.SeedSequence().entropy % 2**32)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "PMAP_OK" in result.stdout, result.stdout + result.stderr


def test_jit_traces_only_on_shape_change(rng):
    traces = []

    def f(z, args):
        traces.append(z.shape)
        return 0.5 * jnp.tanh(z) + args

    solve = jax.jit(lambda z, a: deq.fixed_point(f, z, a, solver=deq.FixedPointIteration()).value)
    solve(jnp.zeros(3), jnp.asarray(rng.standard_normal(3), jnp.float32))
    after_first = len(traces)
    assert after_first > 0
    solve(jnp.zeros(3), jnp.asarray(rng.standard_normal(3), jnp.float32))
    solve(jnp.ones(3), jnp.asarray(rng.standard_normal(3), jnp.float32))
    assert len(traces) == after_first
    solve(jnp.zeros(4), jnp.asarray(rng.standard_normal(4), jnp.float32))
    assert len(traces) > after_first and traces[-1] == (4,)


# ---------------------------------------------------------------- failures


def test_non_convergence_is_reported_per_element(rng):
    n = 6
    easy = contractive_matrix(rng, n, 0.05)
    hard = np.eye(n) * 0.999
    a = jnp.asarray(np.stack([easy, hard]), jnp.float32)
    b = jnp.asarray(rng.standard_normal((2, n)), jnp.float32)

    def f(z, args):
        a, b = args
        return jnp.einsum("bij,bj->bi", a, z) + b

    sol = deq.fixed_point(f, jnp.zeros((2, n)), (a, b), solver=deq.FixedPointIteration(max_iter=8, tol=1e-5), batch_axis=0)
    assert np.asarray(sol.stats.converged).tolist() == [True, False]
    assert np.asarray(sol.stats.finite).tolist() == [True, True]
    assert int(sol.stats.num_steps[0]) < 8 and int(sol.stats.num_steps[1]) == 8
    assert float(sol.stats.rel_residual[0]) <= 1e-5 < float(sol.stats.rel_residual[1])


@pytest.mark.parametrize("solver", [deq.Anderson(implementation="jaxopt"), deq.Anderson(), deq.FixedPointIteration()], ids=["jaxopt", "native", "plain"])
def test_non_finite_iterate_stops_the_solve(rng, solver):
    def f(z, scale):
        return scale * z + 1.0

    # 1e30 * (1e30 + 1) overflows float32 at the second evaluation.
    sol = deq.fixed_point(f, jnp.ones(3), jnp.float32(1e30), solver=solver)
    assert not bool(sol.stats.finite) and not bool(sol.stats.converged)
    assert int(sol.stats.num_steps) == 2
    assert not bool(jnp.all(jnp.isfinite(sol.value)))


@pytest.mark.parametrize("solver", [deq.FixedPointIteration(), deq.Anderson()], ids=["plain", "native"])
def test_huge_finite_residual_is_not_zero(solver):
    # f(z0) = 1.5e38, residual 1e38: finite, but the reciprocal of 1e38 is subnormal in float32
    # (flushed to zero on CPU), so a norm computed by dividing by the peak came out as 0 ("converged").
    sol = deq.fixed_point(lambda z, s: s * z, jnp.full(3, 5e37, jnp.float32), jnp.float32(3.0), solver=solver)
    assert not bool(sol.stats.converged) and not bool(sol.stats.finite)
    assert int(sol.stats.num_steps) == 2


@pytest.mark.parametrize("implementation", ["native", "plain"])
def test_non_finite_element_does_not_stop_the_others(rng, implementation):
    solver = deq.Anderson(implementation="native") if implementation == "native" else deq.FixedPointIteration()

    def f(z, scale):
        return scale * z + 1.0

    scale = jnp.asarray([[1e30], [0.5]], jnp.float32)
    sol = deq.fixed_point(f, jnp.ones((2, 4)), scale, solver=solver, batch_axis=0)
    assert np.asarray(sol.stats.finite).tolist() == [False, True]
    assert np.asarray(sol.stats.converged).tolist() == [False, True]
    assert int(sol.stats.num_steps[0]) == 2
    np.testing.assert_allclose(sol.value[1], 2.0, rtol=1e-4)


def test_throw_raises_eagerly_and_under_jit(rng):
    a = jnp.asarray(np.eye(4) * 0.999, jnp.float32)
    b = jnp.asarray(rng.standard_normal(4), jnp.float32)
    slow = deq.FixedPointIteration(max_iter=3)
    with pytest.raises(deq.FixedPointError, match="did not converge"):
        deq.fixed_point(affine, jnp.zeros(4), (a, b), solver=slow, throw=True)
    jitted = jax.jit(lambda p: deq.fixed_point(affine, jnp.zeros(4), p, solver=slow, throw=True).value)
    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(jitted((a, b)))
    blow_up = jax.jit(lambda s: deq.fixed_point(lambda z, s: s * z + 1.0, jnp.ones(2), s, solver=slow, throw=True).value)
    with pytest.raises(Exception, match="non-finite"):
        jax.block_until_ready(blow_up(jnp.float32(1e30)))
    # A converging solve does not raise, and neither does a failing one without throw.
    fine = deq.fixed_point(affine, jnp.zeros(4), (0.5 * a, b), solver=deq.FixedPointIteration(), throw=True)
    assert bool(fine.stats.converged)
    assert not bool(deq.fixed_point(affine, jnp.zeros(4), (a, b), solver=slow).stats.converged)


def test_throw_covers_the_implicit_adjoint(rng):
    a = jnp.asarray(contractive_matrix(rng, 4, 0.95), jnp.float32)
    b = jnp.asarray(rng.standard_normal(4), jnp.float32)

    def loss(params, backward):
        solver = deq.FixedPointIteration(max_iter=400, tol=1e-6)
        return jnp.sum(deq.fixed_point(affine, jnp.zeros(4), params, solver=solver, backward=backward, throw=True).value)

    grad_fn = jax.jit(jax.grad(loss), static_argnums=1)
    with pytest.raises(Exception, match="implicit adjoint solve did not converge"):
        jax.block_until_ready(grad_fn((a, b), deq.Implicit(max_iter=2)))
    grads = grad_fn((a, b), deq.Implicit(max_iter=500, tol=1e-5, solver=deq.Anderson()))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


# ---------------------------------------------------------------- API contract


def test_no_gradient_reaches_z0(rng):
    b = jnp.asarray(rng.standard_normal(3), jnp.float32)
    grad_z0 = jax.grad(lambda z0: jnp.sum(deq.fixed_point(lambda z, b: 0.5 * z + b, z0, b).value))(jnp.ones(3))
    np.testing.assert_array_equal(grad_z0, np.zeros(3))


def test_closing_over_a_traced_value_is_rejected():
    def loss(w):
        return jnp.sum(deq.fixed_point(lambda z, b: w * z + b, jnp.zeros(2), jnp.ones(2)).value)

    with pytest.raises(ValueError, match="closes over 1 traced value"):
        jax.grad(loss)(0.5)
    # The same map with w passed through args differentiates.
    grad = jax.grad(lambda w: jnp.sum(deq.fixed_point(lambda z, a: a[0] * z + a[1], jnp.zeros(2), (w, jnp.ones(2))).value))(0.5)
    np.testing.assert_allclose(grad, 4.0, rtol=1e-4)  # JFB: d/dw sum(w z* + 1) = sum(z*) = 2 + 2.


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: deq.fixed_point(affine, jnp.zeros(3, jnp.int32), None), "floating-point"),
        (lambda: deq.fixed_point(affine, {}, None), "empty pytree"),
        (lambda: deq.fixed_point(lambda z, a: z[:2], jnp.zeros(3), None), r"leaf 0 is float32\[2\]"),
        (lambda: deq.fixed_point(lambda z, a: (z, z), jnp.zeros(3), None), "same structure"),
        (lambda: deq.fixed_point(lambda z, a: z, (jnp.zeros((2, 3)), jnp.zeros((3, 3))), None, batch_axis=0), "sizes"),
        (lambda: deq.fixed_point(lambda z, a: z, jnp.zeros(3), None, batch_axis=1), "out of range"),
        (lambda: deq.fixed_point(lambda z, a: z, jnp.zeros(3), None, solver="anderson"), "solver must be"),
        (lambda: deq.fixed_point(lambda z, a: z, jnp.zeros(3), None, backward="jfb"), "backward must be"),
        (lambda: deq.Anderson(history=1, implementation="jaxopt"), "history must be"),
        (lambda: deq.Anderson(history=0), "history must be"),
        (lambda: deq.Anderson(implementation="scipy"), "implementation"),
        (lambda: deq.FixedPointIteration(damping=0.0), "damping"),
        (lambda: deq.FixedPointIteration(max_iter=0), "max_iter"),
        (lambda: deq.Anderson(tol=-1.0), "tol"),
        (lambda: deq.Phantom(steps=0), "steps"),
        (lambda: deq.Implicit(solver="plain"), "solver must be"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_import_pulls_in_no_heavy_dependency():
    script = textwrap.dedent(
        """
        import sys
        import fusionjax.deq as deq
        heavy = ("flax", "optax", "orbax", "tensorflow_datasets", "tensorflow", "torch")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        # Anderson imports jaxopt on first use; that must not pull them in either.
        from fusionjax.deq import _solvers
        _solvers._jaxopt_anderson(deq.Anderson(implementation="jaxopt"))
        assert "jaxopt" in sys.modules
        loaded += sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print("LOADED", loaded)
        """
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "LOADED []" in result.stdout, result.stdout + result.stderr


def test_readme_example_runs():
    # Same code as the README section "DEQ solver on its own".
    import jax
    import jax.numpy as jnp
    from fusionjax import deq

    def layer(z, args):
        w, x = args
        return jnp.tanh(z @ w + x)

    key_w, key_x = jax.random.split(jax.random.key(0))
    w = 0.5 * jax.random.orthogonal(key_w, 16)
    x = jax.random.normal(key_x, (4, 16))

    @jax.jit
    def loss_and_grad(w, x):
        def loss(w):
            sol = deq.fixed_point(layer, jnp.zeros((4, 16)), (w, x),
                                  solver=deq.Anderson(history=5, max_iter=30, tol=1e-5),
                                  backward=deq.JFB(), batch_axis=0)
            return jnp.mean(sol.value ** 2), sol.stats

        return jax.value_and_grad(loss, has_aux=True)(w)

    (value, stats), grad = loss_and_grad(w, x)
    print(stats.num_steps, stats.rel_residual, stats.converged)

    assert grad.shape == (16, 16) and bool(jnp.all(stats.converged))
    assert stats.num_steps.shape == (4,) and bool(jnp.isfinite(value))
