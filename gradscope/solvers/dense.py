"""Dense LU: materialise the matrix and solve (the reference path for small states)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..status import Status
from .base import CONDITIONING, Iteration, Solver

if TYPE_CHECKING:
    from ..layout import SampleLayout
    from ..operators import LinearOperator

__all__ = ["Dense"]


@dataclass(frozen=True)
class Dense(Solver):
    """Materialise A and solve by LU (:func:`torch.linalg.solve`): the reference path.

    Costs n products (per-sample) or N = numel products (whole) and O(n³) flops: for
    small states only. A singular matrix is reported (:attr:`~gradscope.Status.SINGULAR`),
    not raised.

    Args:
        per_sample: materialise one n×n block per sample (valid when samples are
            independent) or the whole N×N matrix; ``None`` picks per-sample when valid.
        rtol, atol: the certificate: converged when the true residual
            ``‖b − Ax‖ ≤ max(rtol‖b‖, atol)``; ``rtol=None`` takes
            :func:`~gradscope.solvers.default_solver_rtol` of the dtype.
        max_steps: unused (one factorisation); kept so every solver has the same fields.
        strict: raise instead of warning when the certificate fails.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> from gradscope.solvers import Dense, linear_solve
        >>> M = torch.tensor([[2.0, 1.0], [0.0, 4.0]], dtype=torch.float64)
        >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> linear_solve(A, torch.ones(2, dtype=torch.float64), Dense()).value
        tensor([0.3750, 0.2500], dtype=torch.float64)

    """

    per_sample: bool | None = None
    rtol: float | None = None
    atol: float = 0.0
    max_steps: int = 1
    strict: bool = False

    def iterate(
        self, A: LinearOperator, b: torch.Tensor, x: torch.Tensor, layout: SampleLayout
    ) -> Iteration:
        """LU of the materialised matrix (per-sample blocks or whole)."""
        M = A.dense(per_sample=layout.by_sample)
        rhs = layout.flat(b)
        if not layout.by_sample:
            M = M.unsqueeze(0)
        solution, info = torch.linalg.solve_ex(M, rhs.unsqueeze(-1))
        singular = info != 0
        if bool(singular.any()):
            # The factorisation hit a zero pivot: report, keep the initial guess there.
            solution = torch.where(singular[:, None, None], layout.flat(x).unsqueeze(-1), solution)
            return Iteration(layout.unflat(solution.squeeze(-1)), 1, status=Status.SINGULAR)
        return Iteration(layout.unflat(solution.squeeze(-1)), 1)

    def remedy(self, n: int) -> str:
        """LU failing means the system is (numerically) singular in this dtype."""
        return f"LU cannot reach rtol on this system in this dtype: {CONDITIONING}"
