r"""Linear solvers for the adjoint system ``(I − Jᵀ)u = g`` (or any :class:`~gradscope.LinearMap`).

Each solver is a frozen dataclass validated on construction; :func:`~gradscope.linear_solve` runs
one and returns a :class:`~gradscope.Solution` whose residual is the **true** one,
``‖b − A x‖ / ‖b‖``, recomputed with one extra product after the iteration, never
the solver's running estimate.

Batched states: with ``per_sample=True`` each sample (dimension 0) gets its own Krylov
basis, Hessenberg matrix and stopping test, while every product stays one batched
VJP. This is valid only when the samples are independent (J block-diagonal), which
:class:`~gradscope.FixedPointProblem` checks; ``per_sample=None`` picks it when valid.

============================  ==================================  =====================
solver                        converges when                      products per step
============================  ==================================  =====================
:class:`Dense`                A is non-singular                   n (to build A), once
:class:`GMRES`                A is non-singular (restarts aside)  1
:class:`BiCGSTAB`             A is non-singular (may break down)  2
:class:`FixedPointIteration`  ρ(I − A) < 1, i.e. ρ(J) < 1         1
============================  ==================================  =====================
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from . import _batch
from ._checks import check_positive, check_steps, fail, report_failure, tf32_hint
from .operators import LinearMap

__all__ = [
    "GMRES",
    "BiCGSTAB",
    "Dense",
    "FixedPointIteration",
    "Solution",
    "default_solver_rtol",
    "linear_solve",
]


@dataclass
class Solution:
    """The result of a linear solve.

    Attributes:
        value: the solution x, shaped like b.
        converged: every sample met ``‖b − Ax‖ ≤ max(rtol‖b‖, atol)`` and x is finite.
        residual: the largest true relative residual ``‖b − Ax‖ / ‖b‖`` (absolute where
            ``b = 0``).
        residual_per_sample: the true relative residual per sample (or one value).
        steps: iterations (Arnoldi steps, BiCGSTAB or fixed-point iterations).
        matvecs: products with A, the final residual check included.
        trace: the solver's running residual estimate after each step, shape
            ``(steps, samples)``.
        seconds: wall time of the solve.
        solver: the solver that produced it.

    """

    value: torch.Tensor
    converged: bool
    residual: float
    residual_per_sample: torch.Tensor
    steps: int
    matvecs: int
    trace: torch.Tensor = field(repr=False)
    seconds: float = 0.0
    solver: object = None

    def __repr__(self) -> str:
        name = type(self.solver).__name__ if self.solver is not None else "?"
        return (
            f"Solution({name}: converged={self.converged}, residual={self.residual:.3e}, "
            f"steps={self.steps}, matvecs={self.matvecs}, seconds={self.seconds:.4f})"
        )


def default_solver_rtol(dtype: torch.dtype) -> float:
    """The relative residual a solve asks for when ``rtol=None``: what the dtype can reach.

    float64: 1e-8; float32: 1e-5 (near ρ(J) → 1 a float32 product carries ~1e-7 relative
    error, amplified by up to 1/σ_min(I − J)); half precision: 1e-3.
    """
    if dtype == torch.float64:
        return 1e-8
    if dtype == torch.float32:
        return 1e-5
    return 1e-3


def _check_common(call: str, rtol: float | None, atol: float, max_steps: int) -> None:
    if rtol is not None:
        check_positive(call, "rtol", rtol)
    check_positive(call, "atol", atol, allow_zero=True)
    check_steps(call, "max_steps", max_steps)


@dataclass(frozen=True)
class Dense:
    """Materialise A and solve by LU (:func:`torch.linalg.solve`): the reference path.

    Costs n products (per-sample) or N = numel products (whole) and O(n³) flops: for
    small states only.

    Args:
        per_sample: materialise one n×n block per sample (valid when samples are
            independent) or the whole N×N matrix; ``None`` picks per-sample when valid.
        rtol, atol: the certificate: ``converged`` when the true residual
            ``‖b − Ax‖ ≤ max(rtol‖b‖, atol)``; ``rtol=None`` takes
            :func:`default_solver_rtol` of the dtype.
        strict: raise instead of warning when the certificate fails.

    """

    per_sample: bool | None = None
    rtol: float | None = None
    atol: float = 0.0
    strict: bool = False

    def __post_init__(self) -> None:
        _check_common("Dense", self.rtol, self.atol, 1)


@dataclass(frozen=True)
class GMRES:
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
            :func:`default_solver_rtol` of the dtype (1e-8 in float64, 1e-5 in float32).
        restart: Krylov dimension before a restart; the basis holds ``restart + 1``
            vectors (memory: that many copies of the state). Near ρ(J) = 1 a short
            restart converges slowly (tanh cell, d = 256, ρ(J) = 0.99, rtol 1e-8: 514
            steps at restart 30, 240 at 60, 163 at 100, 114 unrestarted).
        max_steps: total Arnoldi steps.
        per_sample: see the module notes; ``None`` picks per-sample when valid.
        strict: raise instead of warning when not converged.

    """

    rtol: float | None = None
    atol: float = 0.0
    restart: int = 60
    max_steps: int = 1000
    per_sample: bool | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _check_common("GMRES", self.rtol, self.atol, self.max_steps)
        check_steps("GMRES", "restart", self.restart)


@dataclass(frozen=True)
class BiCGSTAB:
    """BiCGSTAB (van der Vorst 1992), torch-native, batched per sample; 2 products a step.

    Restarts a sample's shadow residual on breakdown, and from the true residual when
    its running residual has drifted from the true one.
    """

    rtol: float | None = None
    atol: float = 0.0
    max_steps: int = 300
    per_sample: bool | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _check_common("BiCGSTAB", self.rtol, self.atol, self.max_steps)


@dataclass(frozen=True)
class FixedPointIteration:
    r"""Richardson iteration ``x ← x + (b − Ax)``; for ``A = I − Jᵀ`` this is ``u ← g + Jᵀu``.

    The peers' backward solver, kept for comparison. Converges only when ρ(J) < 1, at
    the rate ρ(J): about ``log(1/rtol) / −log ρ(J)`` products. Stops early, keeping the
    best iterate, when the residual grows past ``divergence`` times its start or turns
    non-finite.
    """

    rtol: float | None = None
    atol: float = 0.0
    max_steps: int = 500
    divergence: float = 1e8
    per_sample: bool | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _check_common("FixedPointIteration", self.rtol, self.atol, self.max_steps)
        check_positive("FixedPointIteration", "divergence", self.divergence)


Solver = Dense | GMRES | BiCGSTAB | FixedPointIteration


def linear_solve(
    A: LinearMap,
    b: torch.Tensor,
    solver: Solver | None = None,
    *,
    per_sample: bool = False,
    x0: torch.Tensor | None = None,
) -> Solution:
    r"""Solve ``A x = b`` with ``solver`` and certify the result.

    Args:
        A: the operator.
        b: right-hand side, shaped like A's vectors.
        solver: a solver object (default :class:`GMRES`).
        per_sample: treat dimension 0 as independent samples (used when the solver's
            own ``per_sample`` is ``None``).
        x0: initial guess (default zeros).

    Returns:
        A :class:`Solution`; a :class:`~gradscope.ConvergenceWarning` is issued when it
        did not converge (``strict=True`` raises :class:`~gradscope.ConvergenceError`).

    Example:
        >>> import torch, gradscope as gs
        >>> M = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
        >>> A = gs.LinearMap(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> sol = gs.linear_solve(A, torch.ones(2, dtype=torch.float64), gs.GMRES(rtol=1e-12))
        >>> sol.converged, torch.allclose(M @ sol.value, torch.ones(2, dtype=torch.float64))
        (True, True)

    """
    solver = GMRES() if solver is None else solver
    if not isinstance(solver, (Dense, GMRES, BiCGSTAB, FixedPointIteration)):
        fail(
            "linear_solve",
            f"solver={solver!r}; expected gradscope.GMRES(), BiCGSTAB(), "
            "FixedPointIteration() or Dense().",
            TypeError,
        )
    if not isinstance(A, LinearMap):
        fail(
            "linear_solve", f"A is a {type(A).__name__}; expected a gradscope.LinearMap.", TypeError
        )
    if b.shape != A.shape:
        fail("linear_solve", f"b has shape {tuple(b.shape)}; expected {tuple(A.shape)}.")
    if solver.rtol is None:
        solver = dataclasses.replace(solver, rtol=default_solver_rtol(b.dtype))
    rows_mode = per_sample if solver.per_sample is None else solver.per_sample
    rows_mode = bool(rows_mode) and b.dim() >= 2
    start_count = A.counter[0]
    start = time.perf_counter()
    b = b.detach()
    x = torch.zeros_like(b) if x0 is None else x0.detach().clone()
    if isinstance(solver, Dense):
        x, steps, trace = (
            _dense(A, b, rows_mode),
            1,
            b.new_zeros(0, _batch.sample_count(b, rows_mode)),
        )
    elif isinstance(solver, GMRES):
        x, steps, trace, r = _gmres(A, b, x, solver, rows_mode)
    elif isinstance(solver, BiCGSTAB):
        x, steps, trace = _bicgstab(A, b, x, solver, rows_mode)
    else:
        x, steps, trace, r = _richardson(A, b, x, solver, rows_mode)
    # The certificate: the true residual b − Ax of what we return (GMRES and the
    # fixed-point iteration have just computed it, to decide whether to go on).
    if not isinstance(solver, (GMRES, FixedPointIteration)):
        r = b - A(x)
    b_norm = _batch.norms(b, rows_mode)
    r_norm = _batch.norms(r, rows_mode)
    tol = torch.clamp(solver.rtol * b_norm, min=solver.atol)
    relative = torch.where(b_norm > 0, r_norm / b_norm.clamp_min(torch.finfo(b.dtype).tiny), r_norm)
    finite = bool(torch.isfinite(x).all()) and bool(torch.isfinite(r_norm).all())
    converged = finite and bool((r_norm <= tol).all())
    if b.is_cuda:
        torch.cuda.synchronize(b.device)
    solution = Solution(
        value=x,
        converged=converged,
        residual=float(relative.max()) if finite else math.inf,
        residual_per_sample=relative,
        steps=steps,
        matvecs=A.counter[0] - start_count,
        trace=trace,
        seconds=time.perf_counter() - start,
        solver=solver,
    )
    if not converged:
        what = "returned non-finite values" if not finite else "did not converge"
        report_failure(
            f"gradscope.linear_solve: {type(solver).__name__} on {A.name} {what}: true relative "
            f"residual {solution.residual:.3e} (rtol={solver.rtol:g}) after {steps} steps and "
            f"{solution.matvecs} products. {_remedy(solver, _batch.flat(b, rows_mode).shape[1])}"
            + tf32_hint(b.is_cuda, b.dtype),
            strict=solver.strict,
        )
    return solution


def _remedy(solver: Solver, n: int) -> str:
    """What to try next when ``solver`` did not converge on systems of size ``n``."""
    conditioning = "check the conditioning (gradscope.smallest_singular_value, spectral_radius)."
    if isinstance(solver, GMRES):
        if solver.restart < n:
            return (
                f"Restarted GMRES can stagnate near a singular system: raise restart (now "
                f"{solver.restart} for systems of size {n}; the basis holds restart + 1 copies "
                f"of the state) or max_steps, try BiCGSTAB, or {conditioning}"
            )
        return f"Raise max_steps, or {conditioning}"
    if isinstance(solver, FixedPointIteration):
        return (
            "Fixed-point iteration converges only when ρ(J) < 1, at rate ρ(J): use GMRES, "
            f"or {conditioning}"
        )
    if isinstance(solver, Dense):
        return f"LU cannot reach rtol on this system in this dtype: {conditioning}"
    return (
        f"Raise max_steps, try GMRES (it converges for any non-singular system), or {conditioning}"
    )


# ---------------------------------------------------------------------- implementations
def _dense(A: LinearMap, b: torch.Tensor, rows_mode: bool) -> torch.Tensor:
    M = A.dense(per_sample=rows_mode)
    rhs = _batch.flat(b, rows_mode)
    if rows_mode:
        x = torch.linalg.solve(M, rhs.unsqueeze(-1)).squeeze(-1)
    else:
        x = torch.linalg.solve(M, rhs[0]).unsqueeze(0)
    return x.reshape(b.shape)


def _gmres(A, b, x, solver: GMRES, rows_mode: bool):
    r"""Restarted GMRES, one Krylov basis per row of ``_batch.flat(b)``.

    Per step: one product, CGS2 as four batched matrix products, and the Givens
    rotations kept as their accumulated orthogonal factor ``Ωᵀ`` ((m+1)×(m+1) per
    row), so that the earlier rotations reach the new Hessenberg column in one batched
    product instead of a loop over the columns; the least-squares residual estimate
    is ``|β (Ωᵀ)_{j+1,0}|``. One host sync (``active.any()``) per step.

    Returns ``(x, steps, trace, r)`` with ``r = b − Ax`` the true residual of the
    returned x (the certificate reuses it).
    """
    shape, dtype, device = b.shape, b.dtype, b.device
    B = _batch.flat(b, rows_mode)
    R, n = B.shape
    m = min(solver.restart, n)
    b_norm = torch.linalg.vector_norm(B, dim=1)
    tol = torch.clamp(solver.rtol * b_norm, min=solver.atol)
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny

    def apply(v: torch.Tensor) -> torch.Tensor:
        return _batch.flat(A(v.reshape(shape)), rows_mode)

    X = _batch.flat(x, rows_mode)  # never written in place
    Rres = B - apply(X) if bool(X.any()) else B
    # Workspace shared by every cycle; V[:, j] is the j-th basis vector of every row.
    V = B.new_empty(R, m + 1, n)
    Rm = B.new_empty(R, m, m)  # upper-triangular factor of the rotated Hessenberg matrix
    Qt = B.new_empty(R, m + 1, m + 1)  # Ωᵀ: the product of the Givens rotations so far
    eye = torch.eye(m + 1, dtype=dtype, device=device)
    trace = B.new_zeros(solver.max_steps, R)
    idx = torch.arange(m, device=device)
    # Rows whose last cycle made the true residual worse (a numerically singular system:
    # the Givens estimate said it fell while the recomputed residual grew). They keep
    # their best iterate and take no further cycles.
    stalled = torch.zeros(R, dtype=torch.bool, device=device)
    steps = 0
    while steps < solver.max_steps:
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
            VjT = Vj.transpose(1, 2)
            # Classical Gram–Schmidt applied twice (CGS2), with w as a row (R, 1, n):
            # both products then read V in its stored layout (several times faster on
            # CPU than the column form for per-sample bases).
            w = apply(V[:, j]).unsqueeze(1)
            h = torch.bmm(w, VjT)  # (R, 1, j+1)
            w = torch.baddbmm(w, h, Vj, alpha=-1)
            h2 = torch.bmm(w, VjT)
            w = torch.baddbmm(w, h2, Vj, alpha=-1).squeeze(1)
            hn = torch.linalg.vector_norm(w, dim=1)
            active = active & (hn > floor)  # a row that broke down is solved after this step
            V[:, j + 1] = torch.where(active[:, None], w / hn.clamp_min(tiny)[:, None], 0.0)
            # Hessenberg column j, rotated by the earlier rotations in one product.
            col = torch.cat([(h + h2).squeeze(1), hn[:, None]], dim=1).unsqueeze(2)
            col = torch.bmm(Qt[:, : j + 2, : j + 2], col).squeeze(2)  # (R, j+2)
            a, c = col[:, j], col[:, j + 1]
            denom = torch.hypot(a, c)
            safe = denom > 0
            cs = torch.where(safe, a / denom.clamp_min(tiny), 1.0)
            sn = torch.where(safe, c / denom.clamp_min(tiny), 0.0)
            Rm[:, :j, j] = col[:, :j]
            Rm[:, j, j] = denom  # = |a| = 0 where the column is zero
            G = torch.stack([cs, sn, -sn, cs], dim=1).reshape(R, 2, 2)
            Qt[:, j : j + 2, : j + 2] = torch.bmm(G, Qt[:, j : j + 2, : j + 2])
            estimate = (beta * Qt[:, j + 1, 0]).abs()
            trace[steps] = torch.where(started, estimate, 0.0)
            cols += started
            active = active & (estimate > tol)
            steps += 1
            k = j + 1
            if steps >= solver.max_steps or not bool(active.any()):
                break
        # Solve R y = β Ωᵀe₁ for each row on its own columns; columns a row did not
        # use (it had stopped) become identity rows with a zero right-hand side.
        unused = idx[None, :k] >= cols[:, None]  # (R, k)
        Rk = torch.where(unused[:, :, None] | unused[:, None, :], 0.0, Rm[:, :k, :k])
        Rk = Rk + torch.diag_embed(unused.to(dtype))
        rhs = torch.where(unused, 0.0, beta[:, None] * Qt[:, :k, 0])
        y = torch.linalg.solve_triangular(Rk, rhs.unsqueeze(2), upper=True)  # (R, k, 1)
        X_new = torch.baddbmm(X.unsqueeze(1), y.transpose(1, 2), V[:, :k]).squeeze(1)
        R_new = B - apply(X_new)
        worse = ~(torch.linalg.vector_norm(R_new, dim=1) <= beta)  # NaN counts as worse
        stalled |= worse
        X = torch.where(worse[:, None], X, X_new)
        Rres = torch.where(worse[:, None], Rres, R_new)
    trace_t = trace[:steps] / b_norm.clamp_min(tiny)
    return X.reshape(shape), steps, trace_t, Rres.reshape(shape)


def _bicgstab(A, b, x, solver: BiCGSTAB, rows_mode: bool):
    shape, dtype = b.shape, b.dtype
    B = _batch.flat(b, rows_mode)
    R = B.shape[0]
    b_norm = torch.linalg.vector_norm(B, dim=1)
    tol = torch.clamp(solver.rtol * b_norm, min=solver.atol)
    tiny = torch.finfo(dtype).tiny

    def apply(v: torch.Tensor) -> torch.Tensor:
        return _batch.flat(A(v.reshape(shape)), rows_mode)

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * v).sum(1)

    def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        ok = den.abs() > tiny
        return torch.where(
            ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num)
        )

    X = _batch.flat(x, rows_mode).clone()
    # The best iterate of each row by its residual norm: BiCGSTAB's residual is erratic
    # and, on a numerically singular system, can blow up; what is returned (and each
    # restart) is never worse than the best seen.
    best_X = X
    steps, trace = 0, []
    while steps < solver.max_steps:
        # (Re)start from the true residual of the best iterate.
        X = best_X
        r = B - apply(X) if bool(X.any()) else B.clone()
        best_norm = torch.linalg.vector_norm(r, dim=1)  # the true norm replaces the recursive one
        active = best_norm > tol
        if not bool(active.any()):
            break
        r_hat = r.clone()
        rho = alpha = omega = torch.ones(R, dtype=dtype, device=B.device)
        v = torch.zeros_like(r)
        p = torch.zeros_like(r)
        restart_needed = False
        while steps < solver.max_steps:
            rho_new = dot(r_hat, r)
            broke = active & (rho_new.abs() <= tiny)
            beta = safe_div(rho_new, rho) * safe_div(alpha, omega)
            p = r + beta[:, None] * (p - omega[:, None] * v)
            v = apply(torch.where(active[:, None], p, 0.0))
            alpha = safe_div(rho_new, dot(r_hat, v))
            s = r - alpha[:, None] * v
            t = apply(torch.where(active[:, None], s, 0.0))
            omega = safe_div(dot(t, s), dot(t, t))
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
                restart_needed = True
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
    return best_X.reshape(shape), steps, trace_t


def _richardson(A, b, x, solver: FixedPointIteration, rows_mode: bool):
    B = _batch.flat(b, rows_mode)
    b_norm = torch.linalg.vector_norm(B, dim=1)
    tol = torch.clamp(solver.rtol * b_norm, min=solver.atol)
    r = b - A(x)
    r_norm = _batch.norms(r, rows_mode)
    start_norm = r_norm
    best, best_r = x, r
    best_norm = torch.where(torch.isfinite(r_norm), r_norm, math.inf)
    steps, trace = 0, []
    # trace[k] is the residual after step k + 1, so that len(trace) == steps.
    while steps < solver.max_steps and not bool((best_norm <= tol).all()):
        x = x + r
        steps += 1
        r = b - A(x)
        r_norm = _batch.norms(r, rows_mode)
        trace.append(r_norm)
        improved = torch.isfinite(r_norm) & (r_norm < best_norm)
        keep = _batch.expand(improved, x, rows_mode)
        best, best_r = torch.where(keep, x, best), torch.where(keep, r, best_r)
        best_norm = torch.where(improved, r_norm, best_norm)
        diverged = ~torch.isfinite(r_norm) | (
            r_norm > solver.divergence * start_norm.clamp_min(1e-300)
        )
        if steps >= solver.max_steps or bool((best_norm <= tol).all()) or bool(diverged.any()):
            break
    trace_t = torch.stack(trace) if trace else B.new_zeros(0, b_norm.shape[0])
    trace_t = trace_t / b_norm.clamp_min(torch.finfo(b.dtype).tiny)
    return best, steps, trace_t, best_r
