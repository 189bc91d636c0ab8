r"""Restarted GMRES with per-sample Krylov bases (Saad & Schultz 1986), torch-native."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .._checks import check_steps
from ..status import Status
from .base import CONDITIONING, Iteration, Solver
from .krylov import cgs2

if TYPE_CHECKING:
    from ..layout import SampleLayout
    from ..operators import LinearOperator

__all__ = ["GMRES"]


@dataclass(frozen=True)
class GMRES(Solver):
    """Restarted GMRES (Saad & Schultz 1986), torch-native, batched per sample.

    Builds an orthonormal Krylov basis by classical Gram–Schmidt applied twice (CGS2:
    as stable as modified Gram–Schmidt, but in matrix products) and minimises the
    residual over it with Givens rotations; restarts after ``restart`` steps from the
    true residual. A single Gram–Schmidt pass (PETSc's default) reads the basis half as
    often but loses orthogonality on ill-conditioned systems with long restarts, which
    then need more steps; the second pass is kept. A cycle that makes a sample's true residual worse
    (a numerically singular system) is undone for that sample, which stops there: the
    result is never worse than the initial guess.

    Args:
        rtol, atol: stop when ``‖b − Ax‖ ≤ max(rtol‖b‖, atol)``; ``rtol=None`` takes
            :func:`~gradscope.solvers.default_solver_rtol` of the dtype (1e-8 in float64, 1e-5 in float32).
        restart: Krylov dimension before a restart; the basis holds ``restart + 1``
            vectors (memory: that many copies of the state). Near ρ(J) = 1 a short
            restart converges slowly (tanh cell, d = 256, ρ(J) = 0.99, rtol 1e-8: 514
            steps at restart 30, 240 at 60, 163 at 100, 114 unrestarted).
        max_steps: total Arnoldi steps.
        per_sample: see the module notes; ``None`` picks per-sample when valid.
        strict: raise instead of warning when not converged.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> from gradscope.solvers import GMRES, linear_solve
        >>> M = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
        >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> sol = linear_solve(A, torch.ones(2, dtype=torch.float64), GMRES(rtol=1e-12))
        >>> sol.converged, torch.allclose(M @ sol.value, torch.ones(2, dtype=torch.float64))
        (True, True)

    """

    rtol: float | None = None
    atol: float = 0.0
    restart: int = 60
    max_steps: int = 1000
    per_sample: bool | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_steps("GMRES", "restart", self.restart)

    def iterate(
        self, A: LinearOperator, b: torch.Tensor, x: torch.Tensor, layout: SampleLayout
    ) -> Iteration:
        r"""Restarted GMRES, one Krylov basis per row of the layout.

        Per step: one product, CGS2 as four batched matrix products, and the Givens
        rotations kept as their accumulated orthogonal factor ``Ωᵀ`` ((m+1)×(m+1) per
        row), so that the earlier rotations reach the new Hessenberg column in one batched
        product instead of a loop over the columns; the least-squares residual estimate
        is ``|β (Ωᵀ)_{j+1,0}|``. One host sync (``active.any()``) per step.

        Returns:
            The :class:`~gradscope.solvers.Iteration`, with ``r = b − Ax`` the true residual
            of the returned x (the certificate reuses it).

        """
        assert self.rtol is not None
        dtype, device = b.dtype, b.device
        B = layout.flat(b)
        R, n = B.shape
        m = min(self.restart, n)
        b_norm = torch.linalg.vector_norm(B, dim=1)
        tol = torch.clamp(self.rtol * b_norm, min=self.atol)
        eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny

        def apply(v: torch.Tensor) -> torch.Tensor:
            return layout.flat(A(layout.unflat(v)))

        X = layout.flat(x)  # never written in place
        Rres = B - apply(X) if bool(X.any()) else B
        # Workspace shared by every cycle; V[:, j] is the j-th basis vector of every row.
        V = B.new_empty(R, m + 1, n)
        Rm = B.new_empty(R, m, m)  # upper-triangular factor of the rotated Hessenberg matrix
        Qt = B.new_empty(R, m + 1, m + 1)  # Ωᵀ: the product of the Givens rotations so far
        eye = torch.eye(m + 1, dtype=dtype, device=device)
        trace = B.new_zeros(self.max_steps, R)
        # Rows whose last cycle made the true residual worse (a numerically singular system:
        # the Givens estimate said it fell while the recomputed residual grew). They keep
        # their best iterate and take no further cycles.
        stalled = torch.zeros(R, dtype=torch.bool, device=device)
        steps = 0
        while steps < self.max_steps:
            beta = torch.linalg.vector_norm(Rres, dim=1)
            active = (beta > tol) & ~stalled
            if not bool((active.any() & torch.isfinite(beta).all()).item()):
                break
            V[:, 0] = torch.where(active[:, None], Rres / beta.clamp_min(tiny)[:, None], 0.0)
            floor = eps * beta  # ‖w‖ at or below it: the Krylov space is invariant (breakdown)
            Qt.copy_(eye)
            Rm.zero_()
            cols = torch.zeros(R, dtype=torch.long, device=device)
            k = 0
            for j in range(m):
                started = active  # the rows that take this step
                Vj = V[:, : j + 1]  # (R, j+1, n)
                w, h = cgs2(Vj, apply(V[:, j]))  # the shared Krylov core
                hn = torch.linalg.vector_norm(w, dim=1)
                active = active & (hn > floor)  # a row that broke down is solved after this step
                V[:, j + 1] = torch.where(active[:, None], w / hn.clamp_min(tiny)[:, None], 0.0)
                _rotate_column(Qt, Rm, torch.cat([h, hn[:, None]], dim=1), j)
                estimate = (beta * Qt[:, j + 1, 0]).abs()
                trace[steps] = torch.where(started, estimate, 0.0)
                cols += started
                active = active & (estimate > tol)
                steps += 1
                k = j + 1
                if steps >= self.max_steps or not bool(active.any()):
                    break
            X_new = _least_squares_update(
                X, V[:, :k], Rm[:, :k, :k], Qt[:, :k, 0] * beta[:, None], cols
            )
            R_new = B - apply(X_new)
            worse = ~(torch.linalg.vector_norm(R_new, dim=1) <= beta)  # NaN counts as worse
            stalled |= worse
            X = torch.where(worse[:, None], X, X_new)
            Rres = torch.where(worse[:, None], Rres, R_new)
        trace_t = trace[:steps] / b_norm.clamp_min(tiny)
        status = Status.STAGNATION if bool(stalled.any()) else None
        return Iteration(layout.unflat(X), steps, trace_t, layout.unflat(Rres), status)

    def remedy(self, n: int) -> str:
        """Restarted GMRES stagnates near singular systems; a longer restart helps."""
        if self.restart < n:
            return (
                f"Restarted GMRES can stagnate near a singular system: raise restart (now "
                f"{self.restart} for systems of size {n}; the basis holds restart + 1 copies "
                f"of the state) or max_steps, try BiCGSTAB, or {CONDITIONING}"
            )
        return f"Raise max_steps, or {CONDITIONING}"


def _rotate_column(Qt: torch.Tensor, Rm: torch.Tensor, column: torch.Tensor, j: int) -> None:
    """Bring Hessenberg column j (``(R, j + 2)``) to triangular form, in place.

    The earlier rotations reach it in one batched product with their accumulated factor
    ``Ωᵀ`` (``Qt``); a new Givens rotation zeroes its last entry and joins ``Ωᵀ``; the
    rotated column is column j of the triangular factor ``Rm``.
    """
    tiny = torch.finfo(column.dtype).tiny
    col = torch.bmm(Qt[:, : j + 2, : j + 2], column.unsqueeze(2)).squeeze(2)  # (R, j+2)
    a, c = col[:, j], col[:, j + 1]
    denom = torch.hypot(a, c)
    safe = denom > 0
    cs = torch.where(safe, a / denom.clamp_min(tiny), 1.0)
    sn = torch.where(safe, c / denom.clamp_min(tiny), 0.0)
    Rm[:, :j, j] = col[:, :j]
    Rm[:, j, j] = denom  # = |a| = 0 where the column is zero
    G = torch.stack([cs, sn, -sn, cs], dim=1).reshape(-1, 2, 2)
    Qt[:, j : j + 2, : j + 2] = torch.bmm(G, Qt[:, j : j + 2, : j + 2])


def _least_squares_update(
    X: torch.Tensor, V: torch.Tensor, Rk: torch.Tensor, rhs: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """``X + V y`` with ``R y = β Ωᵀe₁`` solved per row on the columns that row used.

    Columns a row did not use (it had stopped) become identity rows with a zero
    right-hand side, so every row solves one triangular system of the same size.

    Returns:
        The updated iterate, ``(R, n)``.

    """
    k = Rk.shape[-1]
    unused = torch.arange(k, device=X.device)[None, :] >= cols[:, None]  # (R, k)
    Rk = torch.where(unused[:, :, None] | unused[:, None, :], 0.0, Rk)
    Rk = Rk + torch.diag_embed(unused.to(X.dtype))
    rhs = torch.where(unused, 0.0, rhs)
    y = torch.linalg.solve_triangular(Rk, rhs.unsqueeze(2), upper=True)  # (R, k, 1)
    return torch.baddbmm(X.unsqueeze(1), y.transpose(1, 2), V).squeeze(1)
