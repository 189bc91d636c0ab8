r"""BiCGSTAB (van der Vorst 1992), torch-native, batched per sample; 2 products a step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..status import Status
from .base import Iteration, Solver

if TYPE_CHECKING:
    from ..layout import SampleLayout
    from ..operators import LinearOperator

__all__ = ["BiCGSTAB"]


@dataclass(frozen=True)
class BiCGSTAB(Solver):
    """BiCGSTAB (van der Vorst 1992), torch-native, batched per sample; 2 products a step.

    Restarts a sample's shadow residual on breakdown, and from the true residual when
    its running residual has drifted from the true one; returns the best iterate seen.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> from gradscope.solvers import BiCGSTAB, linear_solve
        >>> M = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
        >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> linear_solve(A, torch.ones(2, dtype=torch.float64), BiCGSTAB()).converged
        True

    """

    rtol: float | None = None
    atol: float = 0.0
    max_steps: int = 300
    per_sample: bool | None = None
    strict: bool = False

    def iterate(
        self, A: LinearOperator, b: torch.Tensor, x: torch.Tensor, layout: SampleLayout
    ) -> Iteration:
        """BiCGSTAB per row, restarting on breakdown; the best iterate is returned."""
        assert self.rtol is not None
        dtype = b.dtype
        B = layout.flat(b)
        R = B.shape[0]
        b_norm = torch.linalg.vector_norm(B, dim=1)
        tol = torch.clamp(self.rtol * b_norm, min=self.atol)
        tiny = torch.finfo(dtype).tiny

        def apply(v: torch.Tensor) -> torch.Tensor:
            return layout.flat(A(layout.unflat(v)))

        X = layout.flat(x).clone()
        # The best iterate of each row by its residual norm: BiCGSTAB's residual is erratic
        # and, on a numerically singular system, can blow up; what is returned (and each
        # restart) is never worse than the best seen.
        best_X = X
        steps, trace, broke_last = 0, [], False
        while steps < self.max_steps:
            # (Re)start from the true residual of the best iterate.
            X = best_X
            r = B - apply(X) if bool(X.any()) else B.clone()
            best_norm = torch.linalg.vector_norm(
                r, dim=1
            )  # the true norm replaces the recursive one
            active = best_norm > tol
            if not bool(active.any()):
                break
            r_hat = r.clone()
            rho = alpha = omega = torch.ones(R, dtype=dtype, device=B.device)
            v = torch.zeros_like(r)
            p = torch.zeros_like(r)
            restart_needed = broke_last = False
            while steps < self.max_steps:
                rho_new = _dot(r_hat, r)
                broke = active & (rho_new.abs() <= tiny)
                beta = _safe_div(rho_new, rho) * _safe_div(alpha, omega)
                p = r + beta[:, None] * (p - omega[:, None] * v)
                v = apply(torch.where(active[:, None], p, 0.0))
                alpha = _safe_div(rho_new, _dot(r_hat, v))
                s = r - alpha[:, None] * v
                t = apply(torch.where(active[:, None], s, 0.0))
                omega = _safe_div(_dot(t, s), _dot(t, t))
                update = alpha[:, None] * p + omega[:, None] * s
                X = X + torch.where(active[:, None], update, 0.0)
                r = torch.where(active[:, None], s - omega[:, None] * t, r)
                rho = rho_new
                steps += 1
                r_norm = torch.linalg.vector_norm(r, dim=1)
                trace.append(torch.where(active, r_norm, torch.zeros_like(r_norm)))
                finite = torch.isfinite(r_norm)
                improved = finite & (r_norm < best_norm)
                best_X = torch.where(improved[:, None], X, best_X)
                best_norm = torch.where(improved, r_norm, best_norm)
                broke = broke | (active & (omega.abs() <= tiny)) | ~finite
                active = active & (r_norm > tol) & finite
                if bool(broke.any()):
                    restart_needed = broke_last = True
                    break
                if not bool(active.any()):
                    break
            if not bool(torch.isfinite(X).all()):
                break
            if not restart_needed:
                # Verify against the true residual; the loop restarts if it has drifted.
                r_true = torch.linalg.vector_norm(B - apply(best_X), dim=1)
                if bool((r_true <= tol).all()):
                    break
        trace_t = torch.stack(trace) / b_norm.clamp_min(tiny) if trace else B.new_zeros(0, R)
        status = Status.BREAKDOWN if broke_last else None
        return Iteration(layout.unflat(best_X), steps, trace_t, None, status)


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Row-wise inner products of ``(R, n)`` blocks."""
    return (u * v).sum(1)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``|den|`` exceeds the dtype's tiny, else 0 (a breakdown)."""
    ok = den.abs() > torch.finfo(den.dtype).tiny
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))
