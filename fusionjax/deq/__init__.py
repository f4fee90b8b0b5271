"""A standalone deep-equilibrium (DEQ) fixed-point solver in pure JAX.

``fixed_point(f, z0, args)`` finds ``z* = f(z*, args)`` with a forward solver
(:class:`Anderson` acceleration, native or through jaxopt's update, limited-memory
:class:`Broyden`, or :class:`FixedPointIteration`) and differentiates through it with a
backward mode (:class:`JFB` Jacobian-free backprop, :class:`Phantom` gradients, or the
exact :class:`Implicit` gradient, by iteration or GMRES) without storing the forward
iterates. Solutions carry :class:`SolverStats` (residuals, a per-iteration residual
trace, a :class:`RESULTS` code) and, with ``has_aux=True``, the map's auxiliary output.
:func:`jacobian_penalty` and :func:`spectral_radius` estimate the map's Jacobian at a
point. It imports only jax, numpy and (on first use of
``Anderson(implementation="jaxopt")``) jaxopt.

Example::

    import jax, jax.numpy as jnp
    from fusionjax import deq

    def f(z, args):
        w, x = args
        return jnp.tanh(w @ z + x)

    w = 0.5 * jnp.eye(3)
    sol = deq.fixed_point(f, jnp.zeros(3), (w, jnp.ones(3)))
    sol.value, sol.stats.converged
"""

from ._backward import AbstractBackward as AbstractBackward
from ._backward import Implicit as Implicit
from ._backward import JFB as JFB
from ._backward import Phantom as Phantom
from ._backward import implicit_adjoint as implicit_adjoint
from ._fixed_point import fixed_point as fixed_point
from ._jacobian import jacobian_penalty as jacobian_penalty
from ._jacobian import spectral_radius as spectral_radius
from ._solution import RESULTS as RESULTS
from ._solution import FixedPointError as FixedPointError
from ._solution import Solution as Solution
from ._solution import SolverStats as SolverStats
from ._solvers import AbstractSolver as AbstractSolver
from ._solvers import Anderson as Anderson
from ._solvers import Broyden as Broyden
from ._solvers import FixedPointIteration as FixedPointIteration

__all__ = [
  "AbstractBackward",
  "AbstractSolver",
  "Anderson",
  "Broyden",
  "FixedPointError",
  "FixedPointIteration",
  "Implicit",
  "JFB",
  "Phantom",
  "RESULTS",
  "Solution",
  "SolverStats",
  "fixed_point",
  "implicit_adjoint",
  "jacobian_penalty",
  "spectral_radius",
]
