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

from ._solution import Solution, raise_if_failed
from ._solvers import AbstractSolver, FixedPointIteration, is_int, is_real

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

    Solves the adjoint fixed point ``u = g + (df/dz(z*))^T u`` for ``g = dL/dz*`` by
    iteration (one reverse pass through ``f`` per step), then returns
    ``u^T df/dargs``. It converges when the forward map is contractive at ``z*``.
    Inspect the adjoint solve with :func:`implicit_adjoint`; with
    ``fixed_point(..., throw=True)`` a failed adjoint solve raises.

    Attributes:
      max_iter: most adjoint iterations.
      tol: relative-residual tolerance of the adjoint solve (same rule as the forward).
      solver: iteration used for the adjoint, a forward-solver option whose own
        ``max_iter`` and ``tol`` are replaced by the two fields above; ``None`` means
        plain :class:`FixedPointIteration`, which suffices for contractive maps
        (``Anderson`` helps when ``df/dz`` has a spectral radius near 1).
    """

    max_iter: int = 100
    tol: float = 1e-6
    solver: AbstractSolver | None = None

    def __post_init__(self):
        if not is_int(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"Implicit: max_iter must be an int >= 1, got {self.max_iter!r}.")
        if not is_real(self.tol) or not self.tol >= 0:
            raise ValueError(f"Implicit: tol must be >= 0, got {self.tol!r}.")
        if self.solver is not None and not isinstance(self.solver, AbstractSolver):
            raise ValueError(
                f"Implicit: solver must be a solver option such as FixedPointIteration() or "
                f"Anderson(), got {self.solver!r}."
            )

    def adjoint_solver(self) -> AbstractSolver:
        """The solver option used for the adjoint, with this option's limits."""
        base = FixedPointIteration() if self.solver is None else self.solver
        return dataclasses.replace(base, max_iter=self.max_iter, tol=self.tol)

    def args_cotangent(self, f, z_star, args, cotangent, *, batch_axis, throw):
        """Adjoint solve, then one reverse pass; see :class:`AbstractBackward`."""
        adjoint = implicit_adjoint(f, z_star, args, cotangent, backward=self, batch_axis=batch_axis)
        if throw:
            raise_if_failed(adjoint.stats, "implicit adjoint", self.tol)
        return _args_vjp(f, z_star, args, adjoint.value)


def implicit_adjoint(
    f: Callable,
    z_star: PyTree,
    args: PyTree,
    cotangent: PyTree,
    *,
    backward: Implicit = Implicit(),
    batch_axis: int | None = None,
) -> Solution:
    """Solves the adjoint fixed point of :class:`Implicit`, exactly as its backward pass does.

    Useful to check how well the implicit gradient converged (its stats are not part of
    the gradient). Works under ``jit`` and ``vmap``.

    Args:
      f: the map ``f(z, args) -> z``.
      z_star: a fixed point of ``f`` (e.g. ``fixed_point(...).value``).
      args: the map's other inputs.
      cotangent: ``dL/dz*``, structured like ``z_star``.
      backward: the :class:`Implicit` option whose adjoint solve to run.
      batch_axis: ``None`` or the batch axis of every leaf, for per-element stats.

    Returns:
      A :class:`Solution` whose value is ``u = (I - df/dz(z*))^-T cotangent`` and whose
      stats describe the adjoint iteration.
    """
    if not isinstance(backward, Implicit):
        raise ValueError(f"implicit_adjoint needs an Implicit option, got {backward!r}.")
    z_star = jax.lax.stop_gradient(z_star)
    _, pullback_z = jax.vjp(lambda z: f(z, args), z_star)

    def adjoint_map(u, g):
        return jax.tree_util.tree_map(lambda a, b: a + b, g, pullback_z(u)[0])

    value, stats = backward.adjoint_solver().solve(adjoint_map, cotangent, cotangent, batch_axis=batch_axis)
    return Solution(value, stats)
