"""Pytree plumbing: validation and the per-element (row) layout the solvers iterate in."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def check_state(z0: PyTree, batch_axis: int | None) -> int:
  """Validates a fixed-point state and returns the number of batch elements.

  Args:
    z0: the state, a non-empty pytree of floating-point arrays.
    batch_axis: ``None``, or the axis of every leaf that indexes independent problems.

  Returns:
    The size of ``batch_axis`` (the same for every leaf), or ``1`` without one.

  Raises:
    ValueError: if the state is empty, has non-floating leaves, or the batch axis is
      missing from a leaf or has different sizes across leaves.
  """
  leaves = jax.tree_util.tree_leaves(z0)
  if not leaves:
    raise ValueError("z0 is an empty pytree; pass at least one floating-point array.")
  for leaf in leaves:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
        f"z0 has a leaf of dtype {dtype}; fixed-point states must be real "
        "floating-point arrays (float64, float32, float16 or bfloat16): cast it."
      )
  if batch_axis is None:
    return 1
  if not isinstance(batch_axis, (int, np.integer)) or isinstance(batch_axis, bool):
    raise ValueError(f"batch_axis must be an int or None, got {batch_axis!r}.")
  sizes = set()
  for leaf in leaves:
    ndim = np.ndim(leaf)
    if not -ndim <= batch_axis < ndim:
      raise ValueError(
        f"batch_axis={batch_axis} is out of range for a state leaf of shape "
        f"{np.shape(leaf)}; every leaf needs the batch axis."
      )
    sizes.add(np.shape(leaf)[batch_axis])
  if len(sizes) != 1:
    raise ValueError(
      f"batch_axis={batch_axis} has sizes {sorted(sizes)} across the state's leaves; "
      "every leaf must hold the same number of batch elements."
    )
  return sizes.pop()


def check_map(f: Callable, z0: PyTree, args: PyTree, has_aux: bool = False) -> None:
  """Checks, by tracing ``f(z0, args)`` once, its output layout and its closure.

  Args:
    f: the map ``f(z, args) -> z`` (``-> (z, aux)`` with ``has_aux``).
    z0: the initial state.
    args: the map's other inputs.
    has_aux: whether ``f`` returns a pair ``(z, aux)``.

  Raises:
    ValueError: if the output's tree structure, a shape or a dtype differs from
      ``z0``, if ``f`` closes over traced arrays (values computed inside an
      enclosing ``jit``, ``grad``, ``vmap`` or ``pmap``) instead of taking them in ``args``,
      or if ``has_aux`` is set and ``f`` does not return a pair.
  """
  closed, out = jax.make_jaxpr(f, return_shape=True)(z0, args)
  if has_aux:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
      raise ValueError(
        "With has_aux=True, f(z, args) must return a pair (z, aux); got "
        f"{type(out).__name__}{'' if not isinstance(out, (tuple, list)) else f' of length {len(out)}'}."
      )
    out = out[0]
  traced = [c for c in closed.consts if isinstance(c, jax.core.Tracer)]
  if traced:
    shapes = ", ".join(f"{c.aval.str_short()}" for c in traced[:4])
    raise ValueError(
      f"f closes over {len(traced)} traced value(s) ({shapes}) computed inside an "
      "enclosing jit/grad/vmap/pmap; the fixed point's custom backward pass only sees "
      "explicit inputs, so pass such arrays through args: f(z, args)."
    )
  in_def = jax.tree_util.tree_structure(z0)
  out_def = jax.tree_util.tree_structure(out)
  if in_def != out_def:
    raise ValueError(
      f"f(z, args) returned a pytree of structure {out_def}, but z has structure "
      f"{in_def}; f must return a state of the same structure."
    )
  for i, (a, b) in enumerate(zip(jax.tree_util.tree_leaves(z0), jax.tree_util.tree_leaves(out))):
    if np.shape(a) != b.shape or jnp.result_type(a) != b.dtype:
      raise ValueError(
        f"f(z, args) leaf {i} is {b.dtype}{list(b.shape)} but z's leaf {i} is "
        f"{jnp.result_type(a)}{list(np.shape(a))}; f must preserve shapes and "
        "dtypes (cast inside f)."
      )


class RowLayout:
  """Converts a state to and from the layout the solvers iterate in.

  Each leaf becomes a ``(B, n)`` array (``B`` batch elements, ``n`` numbers per
  element; ``B = 1`` without a batch axis) in at least float32. Low-precision states
  (bfloat16, float16) are iterated in float32 because Anderson's Gram matrix and
  mixing lose too much in 8 or 11 mantissa bits; ``f`` itself still sees the
  original dtype, so the map's arithmetic is unchanged.
  """

  def __init__(self, like: PyTree, batch_axis: int | None):
    """Records the layout of ``like``.

    Args:
      like: a state whose structure, shapes and dtypes define the layout.
      batch_axis: ``None`` or the batch axis of every leaf.
    """
    leaves, self.treedef = jax.tree_util.tree_flatten(like)
    self.shapes = [tuple(np.shape(x)) for x in leaves]
    self.dtypes = [jnp.result_type(x) for x in leaves]
    self.row_dtypes = [jnp.promote_types(d, jnp.float32) for d in self.dtypes]
    self.axes = [None if batch_axis is None else batch_axis % len(s) for s in self.shapes]
    self.num_elements = 1 if batch_axis is None else self.shapes[0][self.axes[0]]

  def to_rows(self, tree: PyTree) -> list[jax.Array]:
    """Returns the leaves of ``tree`` as ``(B, n)`` arrays in the iteration dtype."""
    leaves = jax.tree_util.tree_leaves(tree)
    rows = []
    for leaf, axis, dtype in zip(leaves, self.axes, self.row_dtypes):
      leaf = jnp.asarray(leaf).astype(dtype)
      if axis is not None:
        leaf = jnp.moveaxis(leaf, axis, 0)
      rows.append(leaf.reshape(self.num_elements, -1))
    return rows

  def from_rows(self, rows: list[jax.Array]) -> PyTree:
    """Inverse of :meth:`to_rows`: original shapes and dtypes."""
    leaves = []
    for row, shape, axis, dtype in zip(rows, self.shapes, self.axes, self.dtypes):
      if axis is None:
        leaf = row.reshape(shape)
      else:
        moved = (shape[axis],) + shape[:axis] + shape[axis + 1 :]
        leaf = jnp.moveaxis(row.reshape(moved), 0, axis)
      leaves.append(leaf.astype(dtype))
    return jax.tree_util.tree_unflatten(self.treedef, leaves)

  def squeeze(self, per_element: jax.Array) -> jax.Array:
    """Drops the element axis of a ``(B,)`` array when there is no batch axis."""
    return per_element[0] if self.axes[0] is None else per_element


def rows_norm(rows: list[jax.Array]) -> jax.Array:
  """L2 norm per element over all leaves of a row layout: shape ``(B,)``.

  Scaled by the largest magnitude first, so that large but finite states (above
  ~1e19 in float32, whose squares overflow) still get a finite norm; a NaN or
  infinity anywhere in an element gives a non-finite norm.
  """
  peak = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(r), axis=1) for r in rows])
  # A quarter of the peak: XLA may divide by multiplying with the reciprocal, and the
  # reciprocal of a peak above ~8.5e37 (float32) is subnormal, which the CPU flushes to
  # zero; the norm of such a state then came out as exactly 0 ("converged").
  scale = jnp.where(peak > 0, peak, 1) * 0.25
  total = sum(jnp.sum(jnp.square(r / scale[:, None]), axis=1) for r in rows)
  return scale * jnp.sqrt(total)


def rows_where(mask: jax.Array, new: list[jax.Array], old: list[jax.Array]) -> list[jax.Array]:
  """Per-element select: ``new`` where ``mask`` (shape ``(B,)``) holds, else ``old``."""
  return [jnp.where(mask[:, None], a, b) for a, b in zip(new, old)]


def poison_elements(tree: PyTree, bad: jax.Array, batch_axis: int | None) -> PyTree:
  """Sets the batch elements flagged in ``bad`` to NaN in every leaf of ``tree``.

  Args:
    tree: a pytree of floating-point arrays.
    bad: a boolean scalar (no batch axis) or ``(B,)`` array, per element.
    batch_axis: ``None`` or the batch axis of every leaf.

  Returns:
    ``tree`` with the flagged elements replaced by NaN.
  """

  def poison(leaf):
    mask = bad
    if batch_axis is not None:
      axis = batch_axis % leaf.ndim
      mask = bad.reshape((1,) * axis + (-1,) + (1,) * (leaf.ndim - axis - 1))
    return jnp.where(mask, jnp.asarray(jnp.nan, leaf.dtype), leaf)

  return jax.tree_util.tree_map(poison, tree)
