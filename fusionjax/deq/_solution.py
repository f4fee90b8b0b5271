"""The result of a fixed-point solve and the run-time failure check."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class RESULTS(enum.IntEnum):
  """The codes of :attr:`SolverStats.result` (compare with ``stats.result == RESULTS.successful``).

  Attributes:
    successful: the stopping rule was met (``converged`` is ``True``).
    max_steps_reached: ``max_iter`` iterations ran without meeting it; every iterate was finite.
    nonfinite: the solve stopped on a NaN or infinity (``finite`` is ``False``).
    adjoint_failed: only in the stats of an :class:`~fusionjax.deq.Implicit` adjoint solve
      (:func:`~fusionjax.deq.implicit_adjoint`): the solve turned non-finite or ended
      unconverged with a relative residual above ``Implicit.fail_above``, so the backward
      pass returned a NaN gradient. A forward solve never reports it.
  """

  successful = 0
  max_steps_reached = 1
  nonfinite = 2
  adjoint_failed = 3


def result_code(converged: jax.Array, finite: jax.Array) -> jax.Array:
  """The :class:`RESULTS` code per element, from the ``converged`` and ``finite`` flags."""
  return jnp.where(
    converged, RESULTS.successful, jnp.where(finite, RESULTS.max_steps_reached, RESULTS.nonfinite)
  ).astype(jnp.int32)


class SolverStats(NamedTuple):
  """What an iterative solve did, per batch element when a batch axis is given.

  Residuals use the Euclidean (L2) norm over all leaves of the state together (one
  norm for the whole pytree, or one per element along ``batch_axis``). For a point
  ``z`` at which the map was evaluated:

  - ``abs_residual = ||f(z) - z||``,
  - ``rel_residual = ||f(z) - z|| / ||f(z)||`` (``0`` when both norms are ``0``).

  The returned value is ``f(z)`` for one such ``z``, and both residuals are that
  update's: with ``keep_best=True`` (the default) the iteration with the lowest relative
  residual (a converged iteration is always kept), with ``keep_best=False`` the last one.

  Attributes:
    num_steps: int32, evaluations of the map until the element finished (converged,
      became non-finite, or ``max_iter`` was reached).
    abs_residual: absolute residual of the returned iterate.
    rel_residual: relative residual of the returned iterate.
    converged: whether the solver's stopping rule (``rel_residual <= tol`` or
      ``abs_residual <= atol``) was met.
    finite: ``False`` when the solve stopped early on a NaN or infinity. With
      ``keep_best=True`` the returned value is then the best finite iterate before it
      (the non-finite one only when the very first evaluation was non-finite).
    result: int32 :class:`RESULTS` code, ``successful`` exactly when ``converged``,
      ``nonfinite`` exactly when not ``finite``, else ``max_steps_reached``.
    trace: the relative residual of every iteration, shape ``(max_iter,)`` (with a
      batch axis ``(B, max_iter)``), NaN after the element's last iteration; the only
      part of a solve whose memory grows with ``max_iter``.
  """

  num_steps: jax.Array
  abs_residual: jax.Array
  rel_residual: jax.Array
  converged: jax.Array
  finite: jax.Array
  result: jax.Array
  trace: jax.Array


class Solution(NamedTuple):
  """A fixed point and the stats of the solve that found it.

  Attributes:
    value: the fixed point, a pytree with the structure, shapes and dtypes of ``z0``.
    stats: a :class:`SolverStats`; scalars, or arrays of shape ``(B,)`` with a batch axis.
    aux: with ``fixed_point(..., has_aux=True)``, the auxiliary output of the map
      applied at ``value`` (``f(value, args)[1]``, differentiable like ``value``);
      ``None`` otherwise.
  """

  value: Any
  stats: SolverStats
  aux: Any = None


class FixedPointError(RuntimeError):
  """Raised with ``throw=True`` when a solve fails to converge or becomes non-finite.

  Under ``jax.jit`` the error is raised from a host callback, so JAX re-raises it as
  ``jax.errors.JaxRuntimeError`` whose message contains this error's message.
  """


def failure_message(
  stage: str,
  num_steps: np.ndarray,
  rel_residual: np.ndarray,
  converged: np.ndarray,
  finite: np.ndarray,
  tol: float,
) -> str | None:
  """Describes a failed solve in words, or returns ``None`` when it succeeded.

  Args:
    stage: which solve this was, e.g. ``"forward"`` or ``"implicit adjoint"``.
    num_steps: iterations used, per element.
    rel_residual: relative residuals, per element.
    converged: convergence flags, per element.
    finite: finiteness flags, per element.
    tol: the relative tolerance that was asked for.

  Returns:
    A message naming the problem and what to try, or ``None``.
  """
  converged = np.asarray(converged, dtype=bool).reshape(-1)
  finite = np.asarray(finite, dtype=bool).reshape(-1)
  num_steps = np.asarray(num_steps).reshape(-1)
  rel_residual = np.asarray(rel_residual, dtype=np.float64).reshape(-1)
  total = converged.size
  if not finite.all():
    bad = np.flatnonzero(~finite)
    return (
      f"fixed point {stage} solve produced a non-finite iterate for {bad.size} of "
      f"{total} element(s) (first at index {bad[0]}, iteration {num_steps[bad[0]]}); "
      "the map diverges from this start: make it contractive (e.g. normalise its "
      "output), lower the damping/mixing, or start closer to the fixed point."
    )
  if not converged.all():
    bad = np.flatnonzero(~converged)
    worst = float(np.max(rel_residual[bad]))
    return (
      f"fixed point {stage} solve did not converge for {bad.size} of {total} "
      f"element(s): worst relative residual {worst:.3e} > tol {tol:.3e} after "
      f"{int(np.max(num_steps[bad]))} iterations; raise max_iter, loosen tol, or use "
      "Anderson acceleration."
    )
  return None


def raise_if_failed(stats: SolverStats, stage: str, tol: float) -> None:
  """Raises :class:`FixedPointError` at run time when ``stats`` show a failed solve.

  The check runs in a ``jax.debug.callback``, so it works eagerly and under ``jit``,
  ``vmap``, ``grad`` and ``pmap``.

  Args:
    stats: the stats to check.
    stage: which solve this was, for the message.
    tol: the relative tolerance that was asked for, for the message.
  """

  def check(num_steps, rel_residual, converged, finite):
    message = failure_message(stage, num_steps, rel_residual, converged, finite, tol)
    if message is not None:
      raise FixedPointError(message)

  jax.debug.callback(check, stats.num_steps, stats.rel_residual, stats.converged, stats.finite)
