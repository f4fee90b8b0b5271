"""The differentiable entry point ``fixed_point``."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._backward import JFB, AbstractBackward
from ._solution import Solution, raise_if_failed
from ._solvers import AbstractSolver, Anderson
from ._tree import check_map, check_state

PyTree = Any


def fixed_point(
  f: Callable[[PyTree, PyTree], PyTree],
  z0: PyTree,
  args: PyTree,
  *,
  solver: AbstractSolver = Anderson(),
  backward: AbstractBackward = JFB(),
  batch_axis: int | None = None,
  throw: bool = False,
  has_aux: bool = False,
) -> Solution:
  """Finds ``z* = f(z*, args)`` and differentiates through it without storing iterates.

  The returned value is ``f(z)`` at one point ``z`` the solver evaluated: with the
  solvers' default ``keep_best=True`` the one with the lowest relative residual, else
  the last; ``stats`` measure that update (see :class:`SolverStats`).

  Gradients flow to ``args`` only, by the rule of ``backward``; ``z0`` is treated as a
  constant (it receives a zero gradient), since the fixed point of a well-posed problem
  does not depend on where the iteration starts.

  ``f`` must be a pure function of ``(z, args)``: pass every array it needs (parameters,
  inputs) through ``args`` and do not close over traced values (arrays computed inside
  an enclosing ``jit``/``grad``/``vmap``/``pmap``). The backward pass is a
  ``jax.custom_vjp``, which only differentiates its explicit inputs, so such closures
  are rejected with a ``ValueError``. Closing over constants (Python numbers, NumPy or
  concrete JAX arrays, Flax module definitions) is fine.

  Works under ``jax.jit`` (recompiling only when shapes or dtypes change), ``vmap``,
  ``grad`` and ``pmap``; eager calls re-trace the solver loop each time, so wrap
  repeated calls in ``jit``.

  Args:
    f: the map ``f(z, args) -> z``; it must return a pytree with the structure,
      shapes and dtypes of ``z``.
    z0: the initial point, a pytree of floating-point arrays (float32, bfloat16,
      float16, or float64 with x64 enabled).
    args: the map's other inputs, a pytree of arrays or numbers (``None`` if there
      are none); this is where parameters go.
    solver: the forward solver, e.g. :class:`Anderson` or :class:`FixedPointIteration`.
    backward: the backward mode, e.g. :class:`JFB`, :class:`Phantom` or :class:`Implicit`.
    batch_axis: ``None``, or an axis present in every leaf of ``z0`` that indexes
      independent problems (e.g. 0 for a batch of images); the solver's stopping rule
      and ``stats`` are then per element.
    throw: if ``True``, a solve that does not converge or turns non-finite raises
      :class:`FixedPointError` at run time (under ``jit`` wrapped by JAX as
      ``jax.errors.JaxRuntimeError`` with the same message); this includes the adjoint
      solve of :class:`Implicit` during the backward pass. If ``False``, forward
      failures only show in ``stats``, and a failed :class:`Implicit` adjoint solve
      makes the gradient NaN (see :class:`Implicit`).
    has_aux: if ``True``, ``f`` returns a pair ``(z, aux)``; the solver iterates on
      ``z`` and :attr:`Solution.aux` is ``f(value, args)[1]``, from one more evaluation
      of ``f`` after the solve (differentiable: gradients reach ``args`` through it
      directly and through ``value`` by the rule of ``backward``).

  Returns:
    A :class:`Solution` ``(value, stats, aux)``; ``value`` has the layout of ``z0``,
    ``aux`` is ``None`` unless ``has_aux``.

  Raises:
    ValueError: for an invalid state, batch axis or option, a map whose output layout
      differs from ``z0`` (or that is not a pair with ``has_aux``), or a map that
      closes over traced values.
  """
  if not callable(f):
    raise ValueError(f"f must be a callable f(z, args) -> z, got {type(f).__name__}.")
  if not isinstance(solver, AbstractSolver):
    raise ValueError(
      f"solver must be a solver option such as Anderson() or FixedPointIteration(), got {solver!r}."
    )
  if not isinstance(backward, AbstractBackward):
    raise ValueError(f"backward must be JFB(), Phantom(...) or Implicit(...), got {backward!r}.")
  z0 = jax.tree_util.tree_map(jnp.asarray, z0)
  check_state(z0, batch_axis)
  check_map(f, z0, args, has_aux=bool(has_aux))
  # The solution does not depend on the starting point, so no gradient flows to it.
  z0 = jax.lax.stop_gradient(z0)
  state_map = _StateOnly(f) if has_aux else f
  solution = _solve(state_map, solver, backward, batch_axis, bool(throw), z0, args)
  if throw:
    raise_if_failed(solution.stats, "forward", solver.tol)
  if has_aux:
    _, aux = f(solution.value, args)
    solution = solution._replace(aux=aux)
  return solution


class _StateOnly:
  """``f(z, args)[0]`` for a map that returns ``(z, aux)``; equal for equal ``f``, so
  static-argument caches see the same map."""

  def __init__(self, f: Callable):
    self.f = f

  def __call__(self, z, args):
    return self.f(z, args)[0]

  def __eq__(self, other):
    return isinstance(other, _StateOnly) and other.f == self.f

  def __hash__(self):
    return hash((_StateOnly, self.f))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _solve(f, solver, backward, batch_axis, throw, z0, args):
  value, stats = solver.solve(f, z0, args, batch_axis=batch_axis)
  return Solution(value, stats)


def _solve_fwd(f, solver, backward, batch_axis, throw, z0, args):
  solution = _solve(f, solver, backward, batch_axis, throw, z0, args)
  # Only the fixed point and the inputs are kept: memory is independent of the iteration count.
  return solution, (solution.value, args)


def _solve_bwd(f, solver, backward, batch_axis, throw, residuals, cotangent):
  z_star, args = residuals
  args_cotangent = backward.args_cotangent(
    f, z_star, args, cotangent.value, batch_axis=batch_axis, throw=throw
  )
  return None, args_cotangent


_solve.defvjp(_solve_fwd, _solve_bwd)
