r"""Linear solvers for the adjoint system ``(I − Jᵀ)u = g`` (or any linear operator).

Each solver is a frozen dataclass validated on construction, one file per algorithm;
:func:`~gradscope.solvers.linear_solve` runs one and returns a :class:`~gradscope.solvers.Solution` whose residual is the
**true** one, ``‖b − Ax‖ / ‖b‖``, recomputed after the iteration, never the solver's
running estimate, and whose ``status`` says how it ended.

Batched states: when the operator's samples are independent (J block-diagonal, see
:attr:`gradscope.operators.LinearOperator.independent_samples`) each sample gets its
own Krylov basis, Hessenberg matrix and stopping test, while every product stays one
batched VJP.

===============================================  ==================================  =====================
solver                                           converges when                      products per step
===============================================  ==================================  =====================
:class:`~gradscope.solvers.Dense`                A is non-singular                   n (to build A), once
:class:`~gradscope.solvers.GMRES`                A is non-singular (restarts aside)  1
:class:`~gradscope.solvers.BiCGSTAB`             A is non-singular (may break down)  2
:class:`~gradscope.solvers.FixedPointIteration`  ρ(I − A) < 1, i.e. ρ(J) < 1         1
===============================================  ==================================  =====================
"""

from .base import Iteration, Solution, Solver, default_solver_rtol
from .bicgstab import BiCGSTAB
from .dense import Dense
from .fixed_point_iteration import FixedPointIteration
from .gmres import GMRES
from .minimum_norm import MinimumNorm
from .solve import linear_solve

__all__ = [
    "GMRES",
    "BiCGSTAB",
    "Dense",
    "FixedPointIteration",
    "Iteration",
    "MinimumNorm",
    "Solution",
    "Solver",
    "default_solver_rtol",
    "linear_solve",
]
