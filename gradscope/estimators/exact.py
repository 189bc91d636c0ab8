r"""The exact implicit gradient: solve the adjoint system ``(I − Jᵀ)u = g``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._checks import fail
from ..solvers import GMRES, Solver
from ..solvers.solve import solve
from .base import Adjoint, Estimator

if TYPE_CHECKING:
    import torch

    from ..operators import LinearOperator

__all__ = ["Exact"]


@dataclass(frozen=True)
class Exact(Estimator):
    """The exact implicit gradient: solve ``(I − Jᵀ)u = g``, then ``∇_θ = F_θᵀ u``.

    See :ref:`theory-exact-gradient`. The solve is certified by its true residual; a
    failed solve is reported in the result's status (and warned at the public call).

    Args:
        solver: a linear solver object (default :class:`~gradscope.solvers.GMRES` with
            the dtype's rtol: 1e-8 in float64, 1e-5 in float32).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> g = torch.ones(2, dtype=torch.float64)
        >>> est = gs.estimate_gradient(problem, g, gs.Exact())
        >>> u = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W.T, g)
        >>> torch.allclose(est.adjoint, u), est.status.name
        (True, 'SUCCESS')

    """

    solver: Solver = field(default_factory=GMRES)

    def __post_init__(self) -> None:
        if not isinstance(self.solver, Solver):
            fail(
                "Exact",
                f"solver={self.solver!r}; expected gradscope.solvers.GMRES(), BiCGSTAB(), "
                "FixedPointIteration(), Dense() or another gradscope.solvers.Solver.",
                TypeError,
            )

    @property
    def name(self) -> str:
        """Short label for tables."""
        return f"Exact({type(self.solver).__name__})"

    @property
    def strict(self) -> bool:
        """The solver's ``strict``: a failed solve raises instead of warning."""
        return self.solver.strict

    def adjoint(self, JT: LinearOperator, g: torch.Tensor) -> Adjoint:
        """Solve ``(I − Jᵀ)u = g`` with the solver; the status is the solve's."""
        solution = solve(JT.identity() - JT, g, self.solver, call="Exact")
        return Adjoint(solution.value, solution.status, solution=solution)
