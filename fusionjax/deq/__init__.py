"""A standalone deep-equilibrium (DEQ) fixed-point solver in pure JAX.

``fixed_point(f, z0, args)`` finds ``z* = f(z*, args)`` with a forward solver
(:class:`Anderson` acceleration, native or through jaxopt's update, or
:class:`FixedPointIteration`) and differentiates through it with a backward mode
(:class:`JFB` Jacobian-free backprop, :class:`Phantom` gradients, or the exact
:class:`Implicit` gradient) without storing the forward iterates. It imports only
jax, numpy and (on first use of ``Anderson(implementation="jaxopt")``) jaxopt.

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
from ._solution import FixedPointError as FixedPointError
from ._solution import Solution as Solution
from ._solution import SolverStats as SolverStats
from ._solvers import AbstractSolver as AbstractSolver
from ._solvers import Anderson as Anderson
from ._solvers import FixedPointIteration as FixedPointIteration

__all__ = [
    "AbstractBackward",
    "AbstractSolver",
    "Anderson",
    "FixedPointError",
    "FixedPointIteration",
    "Implicit",
    "JFB",
    "Phantom",
    "Solution",
    "SolverStats",
    "fixed_point",
    "implicit_adjoint",
]
