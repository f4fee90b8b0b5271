"""Backward modes: how the cotangent of a fixed point reaches the map's ``args``.

For ``z* = f(z*, args)`` and a loss ``L``, the exact gradient (implicit function
theorem) is ``dL/dargs = u^T df/dargs(z*)`` with ``u = (I - df/dz(z*))^-T dL/dz*``.
The modes differ in how they approximate ``u``; none stores the forward iterates.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._solution import RESULTS, Solution, SolverStats, raise_if_failed, result_code
from ._solvers import AbstractSolver, FixedPointIteration, is_int, is_real
from ._tree import RowLayout, poison_elements, rows_norm, rows_where

PyTree = Any


def _args_vjp(f: Callable, z_star: PyTree, args: PyTree, u: PyTree) -> PyTree:
  """``u^T df/dargs`` at ``z_star``, one reverse pass through ``f``."""
  _, pullback = jax.vjp(lambda a: f(z_star, a), args)
  return pullback(u)[0]


class AbstractBackward(abc.ABC):
  """The backward-mode protocol: a frozen dataclass with a :meth:`args_cotangent` method."""

  @abc.abstractmethod
  def args_cotangent(
    self,
    f: Callable,
    z_star: PyTree,
    args: PyTree,
    cotangent: PyTree,
    *,
    batch_axis: int | None,
    throw: bool,
  ) -> PyTree:
    """Maps the cotangent of the fixed point to a cotangent of ``args``.

    Args:
      f: the map ``f(z, args) -> z``.
      z_star: the fixed point returned by the forward solve (no gradient).
      args: the map's other inputs.
      cotangent: ``dL/dz*``, structured like ``z_star``.
      batch_axis: the forward solve's batch axis.
      throw: whether failures of an inner solve raise.

    Returns:
      ``dL/dargs``, structured like ``args``.
    """


@dataclasses.dataclass(frozen=True)
class JFB(AbstractBackward):
  """Jacobian-free backpropagation (Fung et al. 2022; the paper's eq. 20).

  Replaces ``(I - df/dz)^-1`` by the identity: ``dL/dargs = dL/dz* . df(z*, args)/dargs``,
  one reverse pass through ``f`` at the stopped fixed point. Memory and cost do not
  depend on the number of forward iterations.
  """

  def args_cotangent(self, f, z_star, args, cotangent, *, batch_axis, throw):
    """One vector-Jacobian product of ``f`` w.r.t. ``args``; see :class:`AbstractBackward`."""
    return _args_vjp(f, z_star, args, cotangent)


@dataclasses.dataclass(frozen=True)
class Phantom(AbstractBackward):
  """Phantom gradient (Geng et al. 2021): differentiate a few damped steps from ``z*``.

  The gradient is that of ``args -> z_k``, where ``z_0 = stop_gradient(z*)`` and
  ``z_{j+1} = (1 - damping) z_j + damping f(z_j, args)``, with ``dL/dz*`` used as the
  cotangent of ``z_k`` (the forward value stays ``z*``). ``steps=1, damping=1`` is
  :class:`JFB`. Memory grows with ``steps`` (they are differentiated through).

  Attributes:
    steps: number of unrolled steps ``k``. Default 5: a middle ground between JFB's
      bias (``k = 1``) and the memory of long unrolls, within the range Geng et al.
      study.
    damping: ``tau`` in ``(0, 1]``. Default 0.5: the damped steps approximate
      ``(I - df/dz)^-1`` by a truncated series in ``(1 - tau) I + tau df/dz``, whose
      spectrum is moved away from -1, so the short series is better behaved than
      with ``tau = 1``.
  """

  steps: int = 5
  damping: float = 0.5

  def __post_init__(self):
    if not is_int(self.steps) or self.steps < 1:
      raise ValueError(f"Phantom: steps must be an int >= 1, got {self.steps!r}.")
    if not is_real(self.damping) or not 0 < self.damping <= 1:
      raise ValueError(f"Phantom: damping must be in (0, 1], got {self.damping!r}.")

  def args_cotangent(self, f, z_star, args, cotangent, *, batch_axis, throw):
    """Reverse pass through ``steps`` damped steps; see :class:`AbstractBackward`."""
    tau = self.damping

    def unrolled(a):
      z = z_star
      for _ in range(self.steps):
        fz = f(z, a)
        z = fz if tau == 1.0 else jax.tree_util.tree_map(lambda x, y: x + tau * (y - x), z, fz)
      return z

    _, pullback = jax.vjp(unrolled, args)
    return pullback(cotangent)[0]


@dataclasses.dataclass(frozen=True)
class Implicit(AbstractBackward):
  """Implicit-function-theorem gradient (the paper's eq. 19, exact at a true fixed point).

  Solves the adjoint system ``(I - df/dz(z*))^T u = g`` for ``g = dL/dz*``, then returns
  ``u^T df/dargs``. Two ways to solve it, each one reverse pass through ``f`` per step:

  - ``solver="iterate"`` (default): the adjoint fixed point ``u = g + (df/dz)^T u`` by
    plain iteration, which converges when the forward map is contractive at ``z*``;
    a forward-solver option (e.g. ``Anderson()``) may be passed instead, its own
    ``max_iter`` and ``tol`` replaced by this option's.
  - ``solver="gmres"``: restarted GMRES (``jax.scipy.sparse.linalg.gmres``) on the
    linear system, which needs no contraction, only that ``I - df/dz`` is invertible;
    e.g. ``f(z) = 2 z + b`` has the gradient ``-1`` that iteration cannot reach.

  Both start from ``u = g`` and measure the result as the forward solve does: with
  ``F(u) = g + (df/dz)^T u``, ``rel_residual = ||F(u) - u|| / ||F(u)||`` (for GMRES
  ``F(u) - u`` is the linear system's residual), per element with ``batch_axis``.

  A failed adjoint solve is never silent. With ``fixed_point(..., throw=True)`` any
  unconverged or non-finite adjoint solve raises. Without it, an element whose adjoint
  solve turned non-finite, or ended unconverged with ``rel_residual > fail_above``,
  gets a NaN adjoint, so every gradient it feeds (in particular that of shared
  parameters) is NaN; an element that stopped unconverged below ``fail_above`` keeps
  its slightly inexact gradient. :func:`implicit_adjoint` reports the adjoint solve,
  with the code ``RESULTS.adjoint_failed`` for the poisoned elements.

  Attributes:
    max_iter: most adjoint iterations; for GMRES the most Krylov iterations, run as
      whole restart cycles (at most ``ceil(max_iter / restart)`` of them).
    tol: relative-residual tolerance of the adjoint solve (same rule as the forward).
    solver: ``"iterate"``, ``"gmres"``, or a forward-solver option to iterate with
      (``None`` is ``"iterate"``).
    restart: GMRES's Krylov-space size between restarts (capped at the state's size);
      memory is ``restart + 1`` copies of the state.
    fail_above: relative residual above which an unconverged adjoint solve counts as
      failed (NaN gradient). Default 1e-3: a diverging iteration's relative residual
      tends to ``|lambda - 1| / |lambda|`` for the dominant eigenvalue ``lambda`` of
      ``df/dz``, above 1e-3 unless ``|lambda|`` is within 0.1% of 1, while a
      convergent solve that stopped at 1e-3 leaves a gradient error of about
      ``1e-3 / (1 - rho)`` for a map of spectral radius ``rho``.

  Defaults: ``restart=20`` is ``jax.scipy.sparse.linalg.gmres``'s own.
  """

  max_iter: int = 100
  tol: float = 1e-6
  solver: str | AbstractSolver | None = "iterate"
  restart: int = 20
  fail_above: float = 1e-3

  def __post_init__(self):
    if not is_int(self.max_iter) or self.max_iter < 1:
      raise ValueError(f"Implicit: max_iter must be an int >= 1, got {self.max_iter!r}.")
    if not is_real(self.tol) or not self.tol >= 0:
      raise ValueError(f"Implicit: tol must be >= 0, got {self.tol!r}.")
    if not (
      self.solver is None
      or isinstance(self.solver, AbstractSolver)
      or self.solver in ("iterate", "gmres")
    ):
      raise ValueError(
        f"Implicit: solver must be 'iterate', 'gmres' or a solver option such as "
        f"FixedPointIteration() or Anderson(), got {self.solver!r}."
      )
    if not is_int(self.restart) or self.restart < 1:
      raise ValueError(f"Implicit: restart must be an int >= 1, got {self.restart!r}.")
    if not is_real(self.fail_above) or not self.fail_above > 0:
      raise ValueError(f"Implicit: fail_above must be > 0, got {self.fail_above!r}.")

  @property
  def uses_gmres(self) -> bool:
    """Whether the adjoint system is solved by GMRES."""
    return isinstance(self.solver, str) and self.solver == "gmres"

  def adjoint_solver(self) -> AbstractSolver:
    """The solver option used to iterate the adjoint, with this option's limits.

    Raises:
      ValueError: with ``solver="gmres"``, which does not iterate a fixed point.
    """
    if self.uses_gmres:
      raise ValueError(
        "Implicit(solver='gmres') solves the adjoint by GMRES, not by a fixed-point solver."
      )
    base = self.solver if isinstance(self.solver, AbstractSolver) else FixedPointIteration()
    return dataclasses.replace(base, max_iter=self.max_iter, tol=self.tol)

  def args_cotangent(self, f, z_star, args, cotangent, *, batch_axis, throw):
    """Adjoint solve, then one reverse pass; see :class:`AbstractBackward`."""
    adjoint = implicit_adjoint(f, z_star, args, cotangent, backward=self, batch_axis=batch_axis)
    if throw:
      raise_if_failed(adjoint.stats, "implicit adjoint", self.tol)
    # A failed adjoint would give a finite but arbitrary gradient: make it NaN instead.
    u = poison_elements(adjoint.value, adjoint.stats.result == RESULTS.adjoint_failed, batch_axis)
    return _args_vjp(f, z_star, args, u)


def implicit_adjoint(
  f: Callable,
  z_star: PyTree,
  args: PyTree,
  cotangent: PyTree,
  *,
  backward: Implicit = Implicit(),
  batch_axis: int | None = None,
  has_aux: bool = False,
) -> Solution:
  """Solves the adjoint system of :class:`Implicit`, exactly as its backward pass does.

  Useful to check how well the implicit gradient converged (its stats are not part of
  the gradient). Works under ``jit`` and ``vmap``.

  Args:
    f: the map ``f(z, args) -> z`` (``-> (z, aux)`` with ``has_aux``).
    z_star: a fixed point of ``f`` (e.g. ``fixed_point(...).value``).
    args: the map's other inputs.
    cotangent: ``dL/dz*``, structured like ``z_star``.
    backward: the :class:`Implicit` option whose adjoint solve to run.
    batch_axis: ``None`` or the batch axis of every leaf, for per-element stats.
    has_aux: whether ``f`` returns a pair ``(z, aux)`` (the aux is ignored).

  Returns:
    A :class:`Solution` whose value is ``u = (I - df/dz(z*))^-T cotangent`` and whose
    stats describe the adjoint solve. ``stats.result`` is ``RESULTS.adjoint_failed``
    for the elements whose gradient the backward pass sets to NaN (see
    :class:`Implicit`), else as for a forward solve. With GMRES, ``num_steps`` counts
    ``restart`` Krylov iterations per restart cycle run (the last cycle may have
    stopped early), ``trace`` has one entry per restart cycle, and the solve also
    stops, as ``max_steps_reached``, when a cycle lowers no element's residual
    (restarting from the same point would repeat that cycle exactly).
  """
  if not isinstance(backward, Implicit):
    raise ValueError(f"implicit_adjoint needs an Implicit option, got {backward!r}.")
  state_map = (lambda z, a: f(z, a)[0]) if has_aux else f
  z_star = jax.lax.stop_gradient(z_star)
  _, pullback_z = jax.vjp(lambda z: state_map(z, args), z_star)

  if backward.uses_gmres:
    value, stats = _gmres_adjoint(
      lambda u: pullback_z(u)[0],
      cotangent,
      tol=backward.tol,
      max_iter=backward.max_iter,
      restart=backward.restart,
      batch_axis=batch_axis,
    )
  else:

    def adjoint_map(u, g):
      return jax.tree_util.tree_map(lambda a, b: a + b, g, pullback_z(u)[0])

    value, stats = backward.adjoint_solver().solve(
      adjoint_map, cotangent, cotangent, batch_axis=batch_axis
    )
  failed = ~stats.finite | (~stats.converged & ~(stats.rel_residual <= backward.fail_above))
  stats = stats._replace(
    result=jnp.where(failed, RESULTS.adjoint_failed, stats.result).astype(jnp.int32)
  )
  return Solution(value, stats)


def _gmres_adjoint(
  transposed: Callable,
  cotangent: PyTree,
  *,
  tol: float,
  max_iter: int,
  restart: int,
  batch_axis: int | None,
) -> tuple[PyTree, SolverStats]:
  """Solves ``(I - J^T) u = g`` by restarted GMRES, one restart cycle per loop step.

  Args:
    transposed: ``u -> J^T u`` in the layout of ``cotangent``.
    cotangent: ``g``.
    tol: relative-residual tolerance, per element (see :class:`Implicit`).
    max_iter: most Krylov iterations, rounded up to whole restart cycles.
    restart: Krylov-space size between restarts.
    batch_axis: ``None`` or the batch axis of every leaf.

  Returns:
    ``(u, stats)`` with ``u`` in the layout and dtypes of ``cotangent``.
  """
  # Row layout, in at least float32: Krylov bases lose orthogonality fast in bfloat16.
  layout = RowLayout(cotangent, batch_axis)
  num = layout.num_elements
  g = layout.to_rows(cotangent)
  real = g[0].dtype
  restart = min(restart, sum(r.size for r in g))
  cycles = -(-max_iter // restart)

  def transposed_rows(u):
    return layout.to_rows(transposed(layout.from_rows(u)))

  def operator(u):
    return [a - b for a, b in zip(u, transposed_rows(u))]

  def measure(u):
    fu = [a + b for a, b in zip(g, transposed_rows(u))]
    abs_res = rows_norm([b - a for a, b in zip(u, fu)])
    f_norm = rows_norm(fu)
    rel_res = jnp.where(abs_res == 0, 0, abs_res / jnp.maximum(f_norm, jnp.finfo(real).tiny))
    finite = jnp.isfinite(abs_res) & jnp.isfinite(f_norm)
    return abs_res, rel_res, f_norm, finite, finite & (rel_res <= tol)

  abs_res, rel_res, f_norm, finite, converged = measure(g)
  stats = SolverStats(
    num_steps=jnp.zeros((num,), jnp.int32),
    abs_residual=abs_res,
    rel_residual=rel_res,
    converged=converged,
    finite=finite,
    result=jnp.zeros((num,), jnp.int32),
    trace=jnp.full((num, cycles), jnp.nan, real),
  )

  def cond(carry):
    k, _, _, stalled, stats = carry
    return (k < cycles) & jnp.any(stats.finite & ~stats.converged & ~stalled)

  def body(carry):
    k, u, f_norm, stalled, stats = carry
    active = stats.finite & ~stats.converged & ~stalled
    # GMRES measures one norm over the whole batch; aiming at the smallest active
    # element's bound makes every element meet its own relative tolerance, and at half
    # of it absorbs the rounding difference between GMRES's residual and this one.
    target = 0.5 * tol * jnp.min(jnp.where(active, f_norm, jnp.inf))
    u_new, _ = jax.scipy.sparse.linalg.gmres(
      operator,
      g,
      x0=u,
      tol=0.0,
      atol=target,
      restart=restart,
      maxiter=1,
      solve_method="incremental",
    )
    abs_res, rel_res, f_norm_new, finite, converged = measure(u_new)
    # A cycle that lowers no element's residual would be repeated exactly by the next one
    # (same start, same Krylov space): the solve has stagnated, e.g. at round-off.
    progress = jnp.any(active & (rel_res < stats.rel_residual))
    stalled = stalled | (active & finite & ~converged & ~progress)
    trace = jax.lax.dynamic_update_index_in_dim(
      stats.trace, jnp.where(active, rel_res, jnp.nan), k, axis=1
    )
    stats = SolverStats(
      num_steps=jnp.where(active, (k + 1) * restart, stats.num_steps).astype(jnp.int32),
      abs_residual=jnp.where(active, abs_res, stats.abs_residual),
      rel_residual=jnp.where(active, rel_res, stats.rel_residual),
      converged=jnp.where(active, converged, stats.converged),
      finite=jnp.where(active, finite, stats.finite),
      result=stats.result,
      trace=trace,
    )
    return (
      k + 1,
      rows_where(active, u_new, u),
      jnp.where(active, f_norm_new, f_norm),
      stalled,
      stats,
    )

  carry = (jnp.zeros((), jnp.int32), g, f_norm, jnp.zeros((num,), bool), stats)
  _, u, _, _, stats = jax.lax.while_loop(cond, body, carry)
  stats = stats._replace(result=result_code(stats.converged, stats.finite))
  return layout.from_rows(u), jax.tree_util.tree_map(layout.squeeze, stats)
