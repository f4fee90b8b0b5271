"""Estimates of the map's Jacobian ``df/dz`` at a point: a training regulariser and a diagnostic.

A DEQ's forward solve and its implicit gradient both converge at a rate set by
``df/dz`` at the fixed point. :func:`jacobian_penalty` estimates ``||df/dz||_F^2 / dim(z)``,
the regulariser of Bai et al. (2021, "Stabilizing Equilibrium Models by Jacobian
Regularization") that keeps the map contractive during training, and
:func:`spectral_radius` estimates ``max |eigenvalue(df/dz)|``, which says whether plain
iteration converges at all (below 1) and how fast.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def _state_map(f: Callable, args: PyTree, has_aux: bool) -> Callable:
  return (lambda z: f(z, args)[0]) if has_aux else (lambda z: f(z, args))


def _gaussian_like(key: jax.Array, tree: PyTree) -> PyTree:
  """Standard normal arrays with the structure, shapes and dtypes of ``tree``."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
    treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
  )


def _squared_norm(tree: PyTree) -> jax.Array:
  """Sum of squares over all leaves, accumulated in at least float32."""
  return sum(
    jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32))))
    for x in jax.tree_util.tree_leaves(tree)
  )


def jacobian_penalty(
  f: Callable,
  z: PyTree,
  args: PyTree,
  key: jax.Array,
  num_samples: int = 1,
  *,
  has_aux: bool = False,
) -> jax.Array:
  """Hutchinson estimate of ``||df/dz||_F^2 / dim(z)`` at ``z``, differentiable in ``args``.

  With Gaussian probes ``e ~ N(0, I)``, ``E ||e^T df/dz||^2 = ||df/dz||_F^2``; each probe
  costs one vector-Jacobian product. The estimate is unbiased; its relative standard
  deviation is at most ``sqrt(2 / num_samples)``. ``dim(z)`` counts every number of the
  state (batch included), as in Bai et al.'s regulariser, so the value does not grow
  with the batch or image size.

  Args:
    f: the map ``f(z, args) -> z`` (``-> (z, aux)`` with ``has_aux``).
    z: the point, typically ``fixed_point(...).value``; any pytree of floating-point
      arrays. It is treated as a constant (no gradient flows back into the solve).
    args: the map's other inputs; the penalty is differentiable with respect to them.
    key: a ``jax.random`` key for the probes.
    num_samples: number of probes averaged.
    has_aux: whether ``f`` returns a pair ``(z, aux)`` (the aux is ignored).

  Returns:
    A scalar in at least float32.
  """
  if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
    raise ValueError(f"jacobian_penalty: num_samples must be an int >= 1, got {num_samples!r}.")
  z = jax.lax.stop_gradient(z)
  dim = sum(math.prod(jnp.shape(x)) for x in jax.tree_util.tree_leaves(z))
  _, pullback = jax.vjp(_state_map(f, args, has_aux), z)
  probes = jax.vmap(lambda k: _gaussian_like(k, z))(jax.random.split(key, num_samples))
  squared = jax.vmap(lambda probe: _squared_norm(pullback(probe)[0]))(probes)
  return jnp.sum(squared) / (num_samples * dim)


def spectral_radius(
  f: Callable,
  z: PyTree,
  args: PyTree,
  key: jax.Array,
  num_iter: int = 20,
  *,
  has_aux: bool = False,
) -> jax.Array:
  """Power-iteration estimate of the largest ``|eigenvalue|`` of ``df/dz`` at ``z``.

  Repeats ``v <- J v / ||J v||`` from a Gaussian start with Jacobian-vector products
  (``J = df/dz`` linearised once at ``z``) and returns the last ``||J v||``. The error
  shrinks like ``(|lambda_2| / |lambda_1|)^num_iter``; for a symmetric ``J`` the
  estimate converges even when ``lambda`` and ``-lambda`` are both dominant. With a
  dominant complex pair of a non-normal ``J`` it oscillates around the radius. A
  diagnostic: it is not differentiated (the result carries no gradient). With a batch
  of independent problems in ``z``, it estimates the largest radius over the batch.

  Args:
    f: the map ``f(z, args) -> z`` (``-> (z, aux)`` with ``has_aux``).
    z: the point, e.g. ``fixed_point(...).value``; any pytree of floating-point arrays.
    args: the map's other inputs.
    key: a ``jax.random`` key for the starting vector.
    num_iter: power iterations (one Jacobian-vector product each).
    has_aux: whether ``f`` returns a pair ``(z, aux)`` (the aux is ignored).

  Returns:
    A non-negative scalar in at least float32.
  """
  if not isinstance(num_iter, int) or isinstance(num_iter, bool) or num_iter < 1:
    raise ValueError(f"spectral_radius: num_iter must be an int >= 1, got {num_iter!r}.")
  z = jax.lax.stop_gradient(z)
  args = jax.tree_util.tree_map(
    lambda x: jax.lax.stop_gradient(x) if isinstance(x, (jax.Array, np.ndarray)) else x, args
  )
  _, jvp = jax.linearize(_state_map(f, args, has_aux), z)

  def normalised(tree):
    norm = jnp.sqrt(_squared_norm(tree))
    # A zero Jacobian maps everything to 0: keep the vector at 0 instead of dividing by 0.
    scale = jnp.where(norm > 0, 1 / jnp.where(norm > 0, norm, 1), 0)
    return jax.tree_util.tree_map(lambda x: (x * scale).astype(x.dtype), tree), norm

  def body(_, carry):
    v, _ = carry
    return normalised(jvp(v))

  # The start's own norm only fixes the carry's dtype; every iteration replaces it.
  _, estimate = jax.lax.fori_loop(0, num_iter, body, normalised(_gaussian_like(key, z)))
  return estimate
