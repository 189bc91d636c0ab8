r"""One call that checks the theory at an equilibrium and says what to do: :func:`~gradscope.check_theory`.

It gathers the fixed-point residual, the spectrum of J (ρ(J), ‖J‖₂, σ_min(I − J)), the
damping bounds, ‖B_λ^k‖₂, Theorem 1 of Geng et al. (2021) for the chosen estimator, the
comparison with the exact gradient, and a recommendation (λ range, optimal λ, k needed),
each finding with the place it comes from.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_bool, check_like, check_positive, fail
from ..estimators import Estimator, Exact, check_estimator, estimate_gradient
from ..operators import jacobian_transpose
from ..problem import FixedPointProblem, check_problem
from ..spectral import (
    Arnoldi,
    DenseSpectrum,
    Lanczos,
    SpectralEstimate,
    damped_power_norm,
    smallest_singular_value,
    spectral_norm,
    spectral_radius,
)
from .advice import Setting, recommend
from .ascent import AscentCheck, check_ascent
from .damping import (
    DERIVED,
    DampingLimit,
    damped_radius,
    damping_limit,
    eigenvalues_of,
    optimal_damping,
)
from .findings import Finding, TheoryReport
from .steps import StepsNeeded, steps_needed
from .verdict import THEOREM1

__all__ = ["check_theory"]

IMPLICIT = (
    "see the docs page 'The implicit function theorem and the adjoint system' "
    "(docs/explanation/implicit_gradients.rst)"
)


def _unconverged(estimate) -> str:
    """A warning appended to a finding whose iterative estimate missed its tolerance."""
    if estimate.converged:
        return ""
    return (
        f" — NOT converged ({type(estimate.method).__name__}, {estimate.matvecs} products, "
        f"accuracy indicator {estimate.max_residual:.2g}): treat it as approximate"
    )


def check_theory(
    problem: FixedPointProblem,
    estimator: Estimator,
    cotangent: torch.Tensor | None = None,
    *,
    dense: bool | None = None,
    tol: float = 1e-3,
) -> TheoryReport:
    r"""Check the theory behind ``estimator`` at this equilibrium and recommend λ and k.

    Findings: fixed-point residual; ρ(J) (Arnoldi), ‖J‖₂ and σ_min(I − J) (Lanczos);
    the admissible damping range ``λ < λ_max`` and ``ρ(B_λ)``; ``‖B_λ^k‖₂``; Theorem 1
    (``‖P(I − Jᵀ) − F_θᵀ‖₂ ≤ σ_min²/σ_max``: a :class:`~gradscope.theory.Verdict`, holds / fails /
    vacuous); with a cotangent, the inner product and cosine with the exact gradient; the
    optimal λ in (0, 1] and the k it needs. A failed condition is a finding, never an
    exception.

    Args:
        problem: the equilibrium (with parameters).
        estimator: the estimator to judge (:class:`~gradscope.Neumann`,
            :class:`~gradscope.Unrolled`, :class:`~gradscope.OneStep` or :class:`~gradscope.Exact`).
        cotangent: g = ∂ℓ/∂h* for the a-posteriori comparison (optional).
        dense: dense references (default: small problems, h* with ≤ 64 entries).
        tol: target relative adjoint error for the k recommendation.

    Returns:
        A :class:`~gradscope.theory.TheoryReport`; ``print(report)`` reads as plain text.

    Raises:
        TypeError, ValueError: bad input (no parameters, wrong estimator type, ...).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.3, 0.2], [-0.1, 0.4]], dtype=torch.float64)
        >>> fn = lambda p, h, x: torch.tanh(p["W"] @ h + p["U"] @ x)
        >>> p = {"W": W, "U": torch.eye(2, dtype=torch.float64)}
        >>> x = torch.tensor([0.5, -0.2], dtype=torch.float64)
        >>> fp = gs.find_fixed_point(lambda h: fn(p, h, x), h0=torch.zeros(2, dtype=torch.float64), rtol=1e-13)
        >>> problem = gs.FixedPointProblem.from_function(fn, p, fp.value, x)
        >>> report = gs.check_theory(problem, gs.Neumann(5, 0.5), torch.ones(2, dtype=torch.float64))
        >>> report["Theorem 1"].value
        <Verdict.HOLDS: 'holds'>

    """
    call = "check_theory"
    _check_arguments(call, problem, estimator, cotangent, dense, tol)
    asked_dense = dense
    dense = problem.h_star.numel() <= 64 if dense is None else dense
    spectral_dense = dense or jacobian_transpose(problem).layout().n <= 64
    radius, norm, smin = _spectrum(problem, spectral_dense)
    if not math.isfinite(radius.value):
        fail(
            call,
            "the Jacobian J = ∂F/∂h at h* is not finite (a product with J returned inf or "
            "NaN: F is not differentiable at h*, e.g. sqrt or abs at 0, or overflows); "
            "expected a finite J. The spectrum and the theory checks need one.",
        )
    mu = eigenvalues_of(call, radius)
    limit, optimum = damping_limit(mu), optimal_damping(mu)
    setting = Setting.of(estimator, optimum)
    exact = estimate_gradient(problem, cotangent, Exact()) if cotangent is not None else None
    ascent = check_ascent(problem, estimator, cotangent, dense=dense, exact=exact)
    damping = setting.damping_for_steps(limit, optimum)
    steps = None if damping is None else _steps(problem, damping, ascent, tol, asked_dense)
    findings = [
        _residual_finding(problem),
        *_spectral_findings(radius, norm, smin),
        Finding("λ_max", limit.value, limit.message, DERIVED),
        *_damping_findings(problem, setting, limit, mu, spectral_dense),
        *_ascent_findings(ascent),
        *_steps_findings(steps),
    ]
    name = getattr(estimator, "name", str(estimator))
    advice = recommend(setting, limit, optimum, steps, ascent, radius.value, tol)
    return TheoryReport(
        name, findings, advice, radius, norm, smin, limit, optimum, steps, ascent, ascent.comparison
    )


def _check_arguments(
    call: str,
    problem: object,
    estimator: object,
    cotangent: torch.Tensor | None,
    dense: object,
    tol: float,
) -> None:
    problem = check_problem(call, problem)
    check_estimator(call, estimator, "estimator")
    if not problem.params:
        fail(
            call,
            "the problem has no parameters; expected at least one parameter tensor θ. Pass "
            "params={...} to FixedPointProblem.from_function or a module with trainable "
            "parameters to from_module.",
        )
    if cotangent is not None:
        check_like(call, "cotangent", cotangent, problem.h_star, "h*")
    if dense is not None:
        check_bool(call, "dense", dense)
    check_positive(call, "tol", tol)


def _residual_finding(problem: FixedPointProblem) -> Finding:
    residual = problem.residual.max_relative
    return Finding(
        "fixed-point residual",
        residual,
        "‖F(h*) − h*‖/‖F(h*)‖ (max over samples); phantom gradients and the identities "
        "below assume it is small" + (" — it is NOT small here" if residual > problem.rtol else ""),
        "FixedPointProblem.residual",
    )


def _spectrum(
    problem: FixedPointProblem, dense: bool
) -> tuple[SpectralEstimate, SpectralEstimate, SpectralEstimate]:
    """ρ(J) (Arnoldi), ‖J‖₂ and σ_min(I − J) (Lanczos), or their dense references."""
    radius = spectral_radius(problem, DenseSpectrum() if dense else Arnoldi())
    norm = spectral_norm(problem, DenseSpectrum() if dense else Lanczos())
    smin = smallest_singular_value(problem, DenseSpectrum() if dense else Lanczos(max_steps=150))
    return radius, norm, smin


def _spectral_findings(
    radius: SpectralEstimate, norm: SpectralEstimate, smin: SpectralEstimate
) -> list[Finding]:
    rho, amplification = radius.value, 1 / smin.value if smin.value > 0 else math.inf
    return [
        Finding(
            "ρ(J)",
            rho,
            "spectral radius of J = ∂F/∂h at h*; < 1: fixed-point iteration and the undamped "
            "Neumann series converge"
            + ("" if rho < 1 else " — here it is ≥ 1")
            + _unconverged(radius),
            IMPLICIT,
        ),
        Finding(
            "‖J‖₂",
            norm.value,
            "largest singular value; ≥ ρ(J), much larger for non-normal J (transient growth)"
            + _unconverged(norm),
            DERIVED,
        ),
        Finding(
            "σ_min(I − J)",
            smin.value,
            "distance of the adjoint system (I − Jᵀ)u = g to singular; errors are amplified "
            f"up to 1/σ_min = {amplification:.3g}×" + _unconverged(smin),
            IMPLICIT,
        ),
    ]


def _damping_findings(
    problem: FixedPointProblem,
    setting: Setting,
    limit: DampingLimit,
    mu: torch.Tensor,
    dense: bool,
) -> list[Finding]:
    """Whether a phantom gradient's λ is admissible, and ``‖B_λ^k‖₂`` at its k."""
    if not setting.phantom:
        return []
    lam, k = setting.damping, setting.steps
    assert k is not None  # Setting.of gives every phantom estimator its steps
    bk = damped_power_norm(problem, lam, k, DenseSpectrum() if dense else Lanczos())
    return [
        Finding(
            f"λ = {lam:g} admissible",
            limit.admits(lam),
            f"ρ(B_λ) = {damped_radius(mu, lam):.4g} for B_λ = (1 − λ)I + λJ; the series "
            "converges iff ρ(B_λ) < 1",
            DERIVED,
        ),
        Finding(
            f"‖B_λ^{k}‖₂",
            bk.value,
            "worst-case relative error of the k-step Neumann adjoint, ‖u* − u_k‖ ≤ "
            "‖B_λ^k‖₂‖u*‖ (u* − u_k = (Bᵀ)^k u*)",
            DERIVED,
        ),
    ]


def _ascent_findings(ascent: AscentCheck) -> list[Finding]:
    """Theorem 1's verdict and, with a cotangent, the measured comparison."""
    findings = [Finding("Theorem 1", ascent.verdict, ascent.message, THEOREM1)]
    if ascent.comparison is None:
        return findings
    measured = "compare(estimate, Exact)"
    return [
        *findings,
        Finding(
            "⟨∇̂, ∇⟩",
            ascent.inner,
            "inner product with the exact gradient for this cotangent; > 0: −∇̂ is a "
            "descent direction (measured, a posteriori)",
            measured,
        ),
        Finding("cosine", ascent.cosine, "cosine similarity with the exact gradient", measured),
        Finding(
            "relative error",
            ascent.relative_error,
            "‖∇̂ − ∇‖/‖∇‖: the bias ε of Theorem 3 (training converges to an O(ε) floor)",
            "Geng et al. 2021, Theorem 3",
        ),
    ]


def _steps_findings(steps: StepsNeeded | None) -> list[Finding]:
    if steps is None:
        return []
    name = f"k needed (λ = {steps.damping:g})"
    return [Finding(name, steps.tolerance_steps, steps.note, DERIVED)]


def _steps(
    problem: FixedPointProblem,
    damping: float,
    ascent: AscentCheck,
    tol: float,
    asked_dense: bool | None,
) -> StepsNeeded:
    """The k needed at ``damping``, with κ of F_θ from the Theorem-1 check."""
    smax, smin = ascent.sigma_max, ascent.sigma_min
    kappa = smax / smin if smin > 1e-8 * smax else math.inf
    return steps_needed(
        problem,
        damping,
        tol=tol,
        kappa=kappa,
        max_steps=200,
        # Unless told, steps_needed picks for itself: one dense per-sample block (n
        # products) up to 512 entries per sample beats a Lanczos per power of B (k²).
        dense=asked_dense,
    )
