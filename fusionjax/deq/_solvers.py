"""Forward solvers: option objects that find a fixed point ``z = f(z, args)``.

Every solver runs one ``lax.while_loop`` whose carry holds the current point, the
solver's own state (Anderson's history) and the per-element result, so memory does not
grow with the number of iterations and nothing is kept for the backward pass.

Shared semantics (all solvers):

- One iteration evaluates ``f`` once, at a point ``z``; the candidate answer is
  ``f(z)`` and its residuals are ``||f(z) - z||`` and ``||f(z) - z|| / ||f(z)||``
  (L2 norm over all leaves, per batch element).
- An element finishes when ``rel_residual <= tol`` or ``abs_residual <= atol``
  (converged), or when its residual or ``f(z)`` is not finite. From then on its value
  and stats are frozen; the loop exits when every element has finished or after
  ``max_iter`` iterations. ``tol`` is thus exactly the bound on the reported
  ``rel_residual`` of a converged element.
- ``keep_best=True`` (default) returns, per element, the candidate with the lowest
  relative residual seen (a converged one always wins), so an oscillating or diverging
  solve that stops unconverged returns its best iterate, not its last;
  ``keep_best=False`` returns the last. Either way the loop carries one candidate, so
  keeping the best costs no memory; ``stats.trace`` records every iteration's relative
  residual, ``max_iter`` numbers per element.
- Iteration runs in at least float32 (see :class:`~fusionjax.deq._tree.RowLayout`);
  ``f`` still sees the state's own dtype. A bfloat16 state's relative residual cannot
  fall much below bfloat16's resolution (about 4e-3), so use ``tol`` of about 1e-2 there.
"""

from __future__ import annotations

import abc
import dataclasses
import numbers
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._solution import SolverStats, result_code
from ._tree import RowLayout, rows_norm, rows_where

PyTree = Any

# Full-precision contractions: on GPU/TPU the default would compute the Gram matrix in TF32/bf16.
_HIGHEST = jax.lax.Precision.HIGHEST


class AbstractSolver(abc.ABC):
  """The forward-solver protocol.

  A solver is a frozen dataclass with at least the fields ``max_iter`` and ``tol``
  (the implicit backward pass replaces them with ``dataclasses.replace``) and a
  :meth:`solve` method. Any object following this protocol can be passed as
  ``fixed_point(..., solver=...)``. The solvers here also take ``keep_best`` (see the
  module docstring) and fill every field of :class:`~fusionjax.deq.SolverStats`.
  """

  max_iter: int
  tol: float

  @abc.abstractmethod
  def solve(
    self, fn: Callable, z0: PyTree, args: PyTree, *, batch_axis: int | None = None
  ) -> tuple[PyTree, SolverStats]:
    """Finds ``z`` with ``fn(z, args) = z``, without recording anything for autodiff.

    Args:
      fn: the map ``fn(z, args) -> z``; it must preserve shapes and dtypes.
      z0: the initial point, a pytree of floating-point arrays.
      args: the map's other inputs, any pytree.
      batch_axis: ``None``, or an axis of every leaf of ``z0`` that indexes
        independent problems; stats are then reported per element.

    Returns:
      ``(value, stats)``: the fixed point (structure, shapes and dtypes of ``z0``)
      and a :class:`~fusionjax.deq.SolverStats`.
    """


def is_int(value: Any) -> bool:
  """Whether ``value`` is a Python or NumPy integer (not a bool)."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
  """Whether ``value`` is a Python or NumPy real number (options must stay hashable)."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_common(name: str, max_iter: int, tol: float, atol: float, keep_best: bool) -> None:
  if not is_int(max_iter) or max_iter < 1:
    raise ValueError(f"{name}: max_iter must be an int >= 1, got {max_iter!r}.")
  if not is_real(tol) or not tol >= 0:
    raise ValueError(f"{name}: tol must be a number >= 0 (a relative residual), got {tol!r}.")
  if not is_real(atol) or not atol >= 0:
    raise ValueError(f"{name}: atol must be a number >= 0 (an absolute residual), got {atol!r}.")
  if not isinstance(keep_best, (bool, np.bool_)):
    raise ValueError(f"{name}: keep_best must be True or False, got {keep_best!r}.")


@dataclasses.dataclass(frozen=True)
class FixedPointIteration(AbstractSolver):
  """Plain or damped fixed-point iteration ``z <- (1 - damping) z + damping f(z)``.

  Attributes:
    max_iter: most evaluations of ``f``.
    tol: stop an element once its relative residual is ``<= tol``.
    atol: stop an element once its absolute residual is ``<= atol`` (0 disables);
      needed when the fixed point is at or near zero, where relative residuals stay large.
    damping: step size in ``(0, 1]``; below 1 it can make a non-contractive but
      averaged map converge, at the price of slower convergence.
    keep_best: return the iterate with the lowest relative residual instead of the
      last (see the module docstring).

  Defaults: ``tol=1e-5`` is well above float32 round-off on large states yet far below
  what changes an 8-bit image; ``max_iter=100`` reaches it for spectral radii up to
  about 0.9 (``log(1e-5) / log(0.9) ~ 110``).
  """

  max_iter: int = 100
  tol: float = 1e-5
  atol: float = 0.0
  damping: float = 1.0
  keep_best: bool = True

  def __post_init__(self):
    _check_common("FixedPointIteration", self.max_iter, self.tol, self.atol, self.keep_best)
    if not is_real(self.damping) or not 0 < self.damping <= 1:
      raise ValueError(f"FixedPointIteration: damping must be in (0, 1], got {self.damping!r}.")

  def solve(self, fn, z0, args, *, batch_axis=None):
    """Runs damped fixed-point iteration; see :meth:`AbstractSolver.solve`."""
    damping = self.damping

    def init(z_rows, row_fn, args):
      return z_rows

    def step(z, row_fn, args):
      fz = row_fn(z, args)
      if damping == 1.0:
        return z, fz, fz
      nxt = [a + damping * (b - a) for a, b in zip(z, fz)]
      return z, fz, nxt

    return run_solver_loop(
      init,
      step,
      fn,
      z0,
      args,
      batch_axis=batch_axis,
      max_iter=self.max_iter,
      tol=self.tol,
      atol=self.atol,
      keep_best=self.keep_best,
    )


@dataclasses.dataclass(frozen=True)
class Anderson(AbstractSolver):
  """Anderson acceleration (Anderson 1965; Walker & Ni 2011).

  Keeps the last ``history`` points ``x_i`` and residuals ``g_i = f(x_i) - x_i``,
  finds weights ``alpha`` (summing to 1) minimising ``||sum_i alpha_i g_i||`` with a
  ridge term, and moves to ``sum_i alpha_i (x_i + mixing * g_i)``.

  Two implementations of the same update; the stopping rule, stats and non-finite
  handling are this package's own (see the module docstring) in both:

  - ``"native"`` (default): the update written here, with one set of weights per
    batch element (elements are independent: a batched solve equals separate
    solves), the partial history used from the second iteration on, and ``ridge``
    relative to the mean squared residual norm in the history (scale-free).
  - ``"jaxopt"``: drives ``jaxopt.AndersonAcceleration``'s ``init_state``/``update``
    steps, so jaxopt's conventions hold: the first ``history`` iterations are plain
    fixed-point steps (with ``max_iter <= history`` this is plain iteration),
    ``ridge`` is added to the raw Gram matrix (absolute, so its effect depends on the
    state's scale), and with a batch axis one set of weights is shared by the whole
    batch, so elements are coupled: an element's result depends slightly on the rest
    of the batch, and a non-finite element spoils the others.

  The default is ``"native"`` because jaxopt's absolute ridge swamps the Gram matrix
  once residuals are small, and the weights then just average the history: on the
  256-dimensional affine maps of ``benchmarks/deq_benchmark.py`` (tolerance 1e-5)
  jaxopt's update took 24, 128 and 302 iterations at spectral radius 0.5, 0.9 and
  0.99 (plain iteration: 15, 68, 672), the native update 11, 29 and 66. jaxopt stays
  one keyword away, as the reference implementation of the update.

  Attributes:
    history: number of past iterates mixed (memory: ``2 * history`` copies of the state).
    mixing: jaxopt's ``beta``; 1 mixes the map's outputs, smaller values damp.
    ridge: Tikhonov regularisation of the least-squares problem (see above).
    max_iter: most evaluations of ``f``.
    tol: stop an element once its relative residual is ``<= tol``.
    atol: stop an element once its absolute residual is ``<= atol`` (0 disables).
    implementation: ``"jaxopt"`` or ``"native"``.
    keep_best: return the iterate with the lowest relative residual instead of the
      last (see the module docstring).

  Defaults: ``history=5`` and ``ridge=1e-5`` are jaxopt's (and common DEQ) values;
  ``tol=1e-5`` as for :class:`FixedPointIteration`; ``max_iter=50`` is ample for
  spectral radii up to 0.99 with the native update (see the benchmark).
  """

  history: int = 5
  mixing: float = 1.0
  ridge: float = 1e-5
  max_iter: int = 50
  tol: float = 1e-5
  atol: float = 0.0
  implementation: str = "native"
  keep_best: bool = True

  def __post_init__(self):
    _check_common("Anderson", self.max_iter, self.tol, self.atol, self.keep_best)
    if self.implementation not in ("jaxopt", "native"):
      raise ValueError(
        f"Anderson: implementation must be 'jaxopt' or 'native', got {self.implementation!r}."
      )
    # jaxopt rejects a history of 1; the native update with one entry is plain iteration.
    smallest = 2 if self.implementation == "jaxopt" else 1
    if not is_int(self.history) or self.history < smallest:
      raise ValueError(
        f"Anderson: history must be an int >= {smallest} for implementation="
        f"{self.implementation!r}, got {self.history!r}."
      )
    if not is_real(self.mixing) or not self.mixing > 0:
      raise ValueError(f"Anderson: mixing must be > 0, got {self.mixing!r}.")
    if not is_real(self.ridge) or not self.ridge >= 0:
      raise ValueError(f"Anderson: ridge must be >= 0, got {self.ridge!r}.")

  def solve(self, fn, z0, args, *, batch_axis=None):
    """Runs Anderson acceleration; see :meth:`AbstractSolver.solve`."""
    if self.implementation == "jaxopt":
      init, step = _jaxopt_anderson(self)
    else:
      init, step = _native_anderson(self)
    return run_solver_loop(
      init,
      step,
      fn,
      z0,
      args,
      batch_axis=batch_axis,
      max_iter=self.max_iter,
      tol=self.tol,
      atol=self.atol,
      keep_best=self.keep_best,
    )


@dataclasses.dataclass(frozen=True)
class Broyden(AbstractSolver):
  """Limited-memory Broyden's method ("good" Broyden), line-search free.

  Newton's method on ``g(z) = f(z) - z`` with the inverse Jacobian of ``g`` replaced
  by an estimate ``H``, started at ``H_0 = -I`` (so the first step is plain
  iteration) and corrected after every step by the rank-one "good" Broyden update in
  its Sherman-Morrison form, as in the DEQ reference solver of Bai et al.:
  ``H <- H + (dz - H dg) (dz^T H) / (dz^T H dg)``, with ``dz`` and ``dg`` the changes of
  ``z`` and ``g`` over the last step. ``H = -I + sum_i u_i v_i^T`` is stored as its
  rank-one terms in a fixed buffer of ``memory`` slots. When the buffer is full the
  estimate restarts from ``H = -I`` (the next update fills the first slot again). The
  alternative of overwriting only the oldest term, as a ring buffer, leaves a product
  of updates that no longer satisfies the secant conditions: in float32 on
  256-dimensional affine maps of spectral radius 0.99 (as in
  ``benchmarks/deq_benchmark.py``) it diverged with every buffer size tried, 5 to 40,
  while restarting converged in about as many iterations as :class:`Anderson`. The next
  point is ``z - H g(z)``, a full step (no line search).

  Each batch element has its own ``H`` (a batched solve equals separate solves). An
  update whose denominator is zero or non-finite (e.g. after an element has stopped
  moving) is skipped: its slot is written with zeros.

  Attributes:
    max_iter: most evaluations of ``f``.
    tol: stop an element once its relative residual is ``<= tol``.
    atol: stop an element once its absolute residual is ``<= atol`` (0 disables).
    memory: rank-one terms kept (memory: ``2 * memory`` copies of the state).
    keep_best: return the iterate with the lowest relative residual instead of the
      last (see the module docstring). Broyden's residual is not monotone, so this
      matters more than for the other solvers when a solve stops unconverged.

  Defaults: ``tol=1e-5`` and ``max_iter=50`` as for :class:`Anderson`; ``memory=10``
  stores 20 copies of the state, twice Anderson's default, and on the maps of
  ``benchmarks/deq_benchmark.py`` (spectral radius up to 0.99) larger buffers saved
  under a tenth of the iterations.
  """

  max_iter: int = 50
  tol: float = 1e-5
  atol: float = 0.0
  memory: int = 10
  keep_best: bool = True

  def __post_init__(self):
    _check_common("Broyden", self.max_iter, self.tol, self.atol, self.keep_best)
    if not is_int(self.memory) or self.memory < 1:
      raise ValueError(f"Broyden: memory must be an int >= 1, got {self.memory!r}.")

  def solve(self, fn, z0, args, *, batch_axis=None):
    """Runs limited-memory Broyden; see :meth:`AbstractSolver.solve`."""
    init, step = _broyden(self.memory)
    return run_solver_loop(
      init,
      step,
      fn,
      z0,
      args,
      batch_axis=batch_axis,
      max_iter=self.max_iter,
      tol=self.tol,
      atol=self.atol,
      keep_best=self.keep_best,
    )


def _jaxopt_anderson(options: Anderson):
  """Init and step functions that delegate the Anderson update to jaxopt."""
  with warnings.catch_warnings():
    # jaxopt announces on import that it is unmaintained; the solver seam already accounts for that.
    warnings.filterwarnings(
      "ignore", message="JAXopt is no longer maintained", category=DeprecationWarning
    )
    import jaxopt

  m = options.history

  def make(row_fn):
    return jaxopt.AndersonAcceleration(
      fixed_point_fun=row_fn,
      history_size=m,
      beta=options.mixing,
      ridge=options.ridge,
      maxiter=options.max_iter,
      tol=options.tol,
      implicit_diff=False,
      jit=False,
    )

  def init(z_rows, row_fn, args):
    return z_rows, make(row_fn).init_state(z_rows, args)

  def step(carry, row_fn, args):
    params, state = carry
    fz, state = make(row_fn).update(params, state, args)
    # jaxopt evaluated f at the (extrapolated) point it stored in the history slot just written.
    slot = (state.iter_num - 1) % m
    z = [h[slot] for h in state.params_history]
    return z, fz, (fz, state)

  return init, step


def _native_anderson(options: Anderson):
  """Init and step functions of an Anderson update with per-element weights."""
  m, mixing, ridge = options.history, options.mixing, options.ridge

  def init(z_rows, row_fn, args):
    num = z_rows[0].shape[0]
    # (B, m, n): element-major, so both contractions below batch over the leading axis.
    history_x = [jnp.zeros((r.shape[0], m, r.shape[1]), r.dtype) for r in z_rows]
    history_g = [jnp.zeros((r.shape[0], m, r.shape[1]), r.dtype) for r in z_rows]
    gram = jnp.zeros((num, m, m), z_rows[0].dtype)
    return z_rows, history_x, history_g, gram, jnp.zeros((), jnp.int32)

  def step(carry, row_fn, args):
    z, history_x, history_g, gram, count = carry
    fz = row_fn(z, args)
    g = [b - a for a, b in zip(z, fz)]
    slot = count % m
    # The contractions read the history from before this step's write and patch in slot
    # `slot` by hand: the written history then only feeds the loop carry, which cut the
    # compiled step's temporary memory by a third (XLA no longer keeps both versions).
    row = sum(jnp.einsum("bmn,bn->bm", h, a, precision=_HIGHEST) for h, a in zip(history_g, g))
    row = row.at[:, slot].set(sum(jnp.sum(jnp.square(a), axis=1) for a in g))  # (B, m)
    gram = gram.at[:, slot, :].set(row).at[:, :, slot].set(row)
    valid = jnp.arange(m) < jnp.minimum(count + 1, m)
    alpha = _anderson_weights(gram, valid, ridge)  # (B, m)
    alpha_new = alpha[:, slot, None]
    alpha_old = alpha.at[:, slot].set(0)
    nxt = [
      jnp.einsum("bm,bmn->bn", alpha_old, hx, precision=_HIGHEST)
      + alpha_new * a
      + mixing * (jnp.einsum("bm,bmn->bn", alpha_old, hg, precision=_HIGHEST) + alpha_new * b)
      for hx, hg, a, b in zip(history_x, history_g, z, g)
    ]
    history_x = [
      jax.lax.dynamic_update_index_in_dim(h, a, slot, axis=1) for h, a in zip(history_x, z)
    ]
    history_g = [
      jax.lax.dynamic_update_index_in_dim(h, a, slot, axis=1) for h, a in zip(history_g, g)
    ]
    return z, fz, (nxt, history_x, history_g, gram, count + 1)

  return init, step


def _anderson_weights(gram: jax.Array, valid: jax.Array, ridge: float) -> jax.Array:
  """Solves ``min ||G^(1/2) alpha||^2 + ridge ||alpha||^2`` s.t. ``sum(alpha) = 1``, per element.

  Args:
    gram: ``(B, m, m)`` Gram matrices of the stored residuals.
    valid: ``(m,)`` which history slots hold data; the others get weight 0.
    ridge: regularisation relative to the mean squared residual norm.

  Returns:
    ``(B, m)`` weights.
  """
  num, m, _ = gram.shape
  both = valid[:, None] & valid[None, :]
  diag = jnp.diagonal(gram, axis1=1, axis2=2)
  scale = jnp.sum(jnp.where(valid, diag, 0), axis=1) / jnp.sum(valid)
  # Scale-free ridge; the floor keeps an exactly converged element from dividing by zero.
  scale = jnp.maximum(scale, jnp.finfo(gram.dtype).tiny)[:, None, None]
  eye = jnp.eye(m, dtype=gram.dtype)
  # Unused slots get an identity row/column and no constraint weight, which pins their alpha to 0.
  system = jnp.where(both, gram / scale, 0) + ridge * eye + jnp.where(valid, 0.0, 1.0) * eye
  ones = valid.astype(gram.dtype)
  top = jnp.concatenate([jnp.zeros((1,), gram.dtype), ones])
  bordered = jnp.concatenate(
    [
      jnp.broadcast_to(top, (num, 1, m + 1)),
      jnp.concatenate([jnp.broadcast_to(ones[:, None], (num, m, 1)), system], axis=2),
    ],
    axis=1,
  )
  rhs = jnp.zeros((num, m + 1), gram.dtype).at[:, 0].set(1)
  return jnp.linalg.solve(bordered, rhs[..., None])[..., 1:, 0]


def _broyden(memory: int):
  """Init and step functions of limited-memory good Broyden with per-element estimates.

  The buffers hold ``u_i`` and ``v_i`` of ``H = -I + sum_i u_i v_i^T``. The update
  numbered ``j`` (from 0) goes to slot ``j % memory``, and only the slots written
  earlier in the current pass through the buffer are used, so a full buffer restarts
  the estimate at ``-I`` without clearing it. Each step reads the buffers before
  writing them and applies the new term by hand, so that XLA can update them in place.
  """

  def dot(a, b):
    # Per-element inner product over all leaves: (B,).
    return sum(jnp.sum(x * y, axis=1) for x, y in zip(a, b))

  def init(z_rows, row_fn, args):
    # (B, memory, n): element-major, like Anderson's history.
    us = [jnp.zeros((r.shape[0], memory, r.shape[1]), r.dtype) for r in z_rows]
    vs = [jnp.zeros((r.shape[0], memory, r.shape[1]), r.dtype) for r in z_rows]
    zeros = [jnp.zeros_like(r) for r in z_rows]
    return z_rows, z_rows, zeros, us, vs, jnp.zeros((), jnp.int32)

  def step(carry, row_fn, args):
    z, z_prev, g_prev, us, vs, count = carry
    fz = row_fn(z, args)
    g = [b - a for a, b in zip(z, fz)]
    dz = [a - b for a, b in zip(z, z_prev)]
    dg = [a - b for a, b in zip(g, g_prev)]
    slot = jnp.maximum(count - 1, 0) % memory
    in_use = (jnp.arange(memory) < slot).astype(z[0].dtype)  # (m,)
    # u_i . dz, and v_i . dg and v_i . g, over the terms in use: (B, m) and (B, 2, m).
    coef_u = (
      sum(jnp.einsum("bmn,bn->bm", u, a, precision=_HIGHEST) for u, a in zip(us, dz)) * in_use
    )
    coef_v = (
      sum(
        jnp.einsum("bmn,bkn->bkm", v, jnp.stack([a, b], axis=1), precision=_HIGHEST)
        for v, a, b in zip(vs, dg, g)
      )
      * in_use
    )
    # H^T dz = -dz + sum_i v_i (u_i . dz); H dg and H g = -x + sum_i u_i (v_i . x).
    ht_dz = [jnp.einsum("bm,bmn->bn", coef_u, v, precision=_HIGHEST) - a for v, a in zip(vs, dz)]
    h_both = [jnp.einsum("bkm,bmn->bkn", coef_v, u, precision=_HIGHEST) for u in us]
    h_dg = [h[:, 0] - a for h, a in zip(h_both, dg)]
    h_g = [h[:, 1] - a for h, a in zip(h_both, g)]
    # Good Broyden: H <- H + (dz - H dg) (dz^T H) / (dz^T H dg).
    denom = dot(ht_dz, dg)  # (B,)
    usable = (count > 0) & jnp.isfinite(denom) & (jnp.abs(denom) > jnp.finfo(denom.dtype).tiny)
    scale = jnp.where(usable, 1 / jnp.where(usable, denom, 1), 0)[:, None]
    keep = usable[:, None]
    # A skipped update writes zeros; non-finite entries (an element that diverged) become 0
    # as well, so the buffer never holds a NaN that a zero coefficient would not cancel.
    u_new = [(a - b) * scale for a, b in zip(dz, h_dg)]
    u_new = [jnp.where(keep & jnp.isfinite(a), a, 0) for a in u_new]
    v_new = [jnp.where(keep & jnp.isfinite(a), a, 0) for a in ht_dz]
    # Quasi-Newton step z - H g with the new term; with H = -I it is z + g = f(z).
    coef_new = dot(v_new, g)[:, None]
    nxt = [a - (b + coef_new * u) for a, b, u in zip(z, h_g, u_new)]
    us = [jax.lax.dynamic_update_index_in_dim(h, a, slot, axis=1) for h, a in zip(us, u_new)]
    vs = [jax.lax.dynamic_update_index_in_dim(h, a, slot, axis=1) for h, a in zip(vs, v_new)]
    return z, fz, (nxt, z, g, us, vs, count + 1)

  return init, step


def run_solver_loop(
  init: Callable,
  step: Callable,
  fn: Callable,
  z0: PyTree,
  args: PyTree,
  *,
  batch_axis: int | None,
  max_iter: int,
  tol: float,
  atol: float,
  keep_best: bool = True,
) -> tuple[PyTree, SolverStats]:
  """The loop shared by all solvers: stopping rule, freezing, best iterate, stats and layout.

  Args:
    init: ``init(z0_rows, row_fn, args) -> carry``, the solver's initial state.
    step: ``step(carry, row_fn, args) -> (z, f(z), carry)``; evaluates the map once.
    fn: the map ``fn(z, args) -> z`` in the user's layout.
    z0: the initial point.
    args: the map's other inputs.
    batch_axis: ``None`` or the batch axis of every leaf.
    max_iter: most iterations.
    tol: relative-residual tolerance.
    atol: absolute-residual tolerance.
    keep_best: return each element's candidate with the lowest relative residual
      (a converged one always) instead of its last.

  Returns:
    ``(value, stats)``, value in the layout and dtypes of ``z0``.
  """
  layout = RowLayout(z0, batch_axis)
  num = layout.num_elements
  # The forward solve is never differentiated: gradients come from the backward modes.
  z0 = jax.lax.stop_gradient(z0)
  args = jax.tree_util.tree_map(
    lambda x: jax.lax.stop_gradient(x) if isinstance(x, (jax.Array, np.ndarray)) else x, args
  )

  def row_fn(z_rows, args):
    return layout.to_rows(fn(layout.from_rows(z_rows), args))

  z_rows = layout.to_rows(z0)
  real = z_rows[0].dtype
  stats = SolverStats(
    num_steps=jnp.zeros((num,), jnp.int32),
    abs_residual=jnp.full((num,), jnp.inf, real),
    rel_residual=jnp.full((num,), jnp.inf, real),
    converged=jnp.zeros((num,), bool),
    finite=jnp.ones((num,), bool),
    result=jnp.zeros((num,), jnp.int32),  # Filled in from the flags after the loop.
    trace=jnp.full((num, max_iter), jnp.nan, real),
  )
  carry = (jnp.zeros((), jnp.int32), init(z_rows, row_fn, args), z_rows, stats)

  def cond(carry):
    k, _, _, stats = carry
    return (k < max_iter) & jnp.any(stats.finite & ~stats.converged)

  def body(carry):
    k, solver_state, value, stats = carry
    z, fz, solver_state = step(solver_state, row_fn, args)
    abs_res = rows_norm([b - a for a, b in zip(z, fz)])
    f_norm = rows_norm(fz)
    # 0/0 -> 0: a map whose fixed point and output are exactly zero has converged.
    rel_res = jnp.where(abs_res == 0, 0, abs_res / jnp.maximum(f_norm, jnp.finfo(real).tiny))
    finite = jnp.isfinite(abs_res) & jnp.isfinite(f_norm)
    converged = finite & ((rel_res <= tol) | (abs_res <= atol))
    active = stats.finite & ~stats.converged
    if keep_best:
      # NaN compares False, so a non-finite candidate replaces only the initial point.
      better = converged | (rel_res < stats.rel_residual) | (stats.num_steps == 0)
      take = active & better
    else:
      take = active
    value = rows_where(take, fz, value)
    trace = jax.lax.dynamic_update_index_in_dim(
      stats.trace, jnp.where(active, rel_res, jnp.nan), k, axis=1
    )
    stats = SolverStats(
      num_steps=jnp.where(active, k + 1, stats.num_steps),
      abs_residual=jnp.where(take, abs_res, stats.abs_residual),
      rel_residual=jnp.where(take, rel_res, stats.rel_residual),
      converged=jnp.where(active, converged, stats.converged),
      finite=jnp.where(active, finite, stats.finite),
      result=stats.result,
      trace=trace,
    )
    return k + 1, solver_state, value, stats

  _, _, value, stats = jax.lax.while_loop(cond, body, carry)
  stats = stats._replace(result=result_code(stats.converged, stats.finite))
  stats = jax.tree_util.tree_map(layout.squeeze, stats)
  return layout.from_rows(value), stats
