r"""Richardson (fixed-point) iteration: the peers' backward solver, kept for comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .._checks import check_positive
from ..status import Status
from .base import CONDITIONING, Iteration, Solver

if TYPE_CHECKING:
    from ..layout import SampleLayout
    from ..operators import LinearOperator

__all__ = ["FixedPointIteration"]


@dataclass(frozen=True)
class FixedPointIteration(Solver):
    r"""Richardson iteration ``x ← x + (b − Ax)``; for ``A = I − Jᵀ`` this is ``u ← g + Jᵀu``.

    The peers' backward solver, kept for comparison. Converges only when ρ(J) < 1, at
    the rate ρ(J): about ``log(1/rtol) / −log ρ(J)`` products
    (:ref:`theory-exact-gradient`). Stops early, keeping the best iterate, when the
    residual grows past ``divergence`` times its start or turns non-finite.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> from gradscope.solvers import FixedPointIteration, linear_solve
        >>> A = FunctionOperator(lambda v: v - 0.5 * v, torch.zeros(2, dtype=torch.float64), "I − J")
        >>> sol = linear_solve(A, torch.ones(2, dtype=torch.float64), FixedPointIteration())
        >>> sol.converged, [round(v, 6) for v in sol.value.tolist()]
        (True, [2.0, 2.0])

    """

    rtol: float | None = None
    atol: float = 0.0
    max_steps: int = 500
    divergence: float = 1e8
    per_sample: bool | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("FixedPointIteration", "divergence", self.divergence)

    def iterate(
        self, A: LinearOperator, b: torch.Tensor, x: torch.Tensor, layout: SampleLayout
    ) -> Iteration:
        """Richardson steps, keeping the best iterate per row."""
        assert self.rtol is not None
        b_norm = layout.norms(b)
        tol = torch.clamp(self.rtol * b_norm, min=self.atol)
        r = b - A(x)
        r_norm = layout.norms(r)
        start_norm = r_norm
        best, best_r = x, r
        best_norm = torch.where(torch.isfinite(r_norm), r_norm, math.inf)
        steps, trace, status = 0, [], None
        # trace[k] is the residual after step k + 1, so that len(trace) == steps.
        while steps < self.max_steps and not bool((best_norm <= tol).all()):
            x = x + r
            steps += 1
            r = b - A(x)
            r_norm = layout.norms(r)
            trace.append(r_norm)
            improved = torch.isfinite(r_norm) & (r_norm < best_norm)
            keep = layout.expand(improved)
            best, best_r = torch.where(keep, x, best), torch.where(keep, r, best_r)
            best_norm = torch.where(improved, r_norm, best_norm)
            diverged = ~torch.isfinite(r_norm) | (
                r_norm > self.divergence * start_norm.clamp_min(1e-300)
            )
            if bool(diverged.any()):
                status = Status.DIVERGED
                break
        trace_t = torch.stack(trace) if trace else b.new_zeros(0, layout.rows)
        trace_t = trace_t / b_norm.clamp_min(torch.finfo(b.dtype).tiny)
        return Iteration(best, steps, trace_t, best_r, status)

    def remedy(self, n: int) -> str:
        """Fixed-point iteration needs ρ(J) < 1."""
        return (
            "Fixed-point iteration converges only when ρ(J) < 1, at rate ρ(J): use GMRES, "
            f"or {CONDITIONING}"
        )
