r"""One call that checks the theory at an equilibrium and says what to do: :func:`~gradscope.check_theory`.

It gathers the fixed-point residual, the spectrum of J (ρ(J), ‖J‖₂, σ_min(I − J)), the
damping bounds, ‖B_λ^k‖₂, Theorem 1 of Geng et al. (2021) for the chosen estimator, the
comparison with the exact gradient, and a recommendation (λ range, optimal λ, k needed),
each finding with the place it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .._checks import check_tensor
from ..estimators import (
    Estimator,
    Exact,
    Neumann,
    OneStep,
    Unrolled,
    check_estimator,
    estimate_gradient,
)
from ..metrics import Comparison
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
from .core import (
    DERIVED,
    THEOREM1,
    AscentCheck,
    DampingChoice,
    DampingLimit,
    StepsNeeded,
    _eigenvalues,
    check_ascent,
    damped_radius,
    damping_limit,
    optimal_damping,
    steps_needed,
)

__all__ = ["Finding", "TheoryReport", "check_theory"]


@dataclass(frozen=True)
class Finding:
    """One line of a :class:`TheoryReport`: a named value, what it means and its source."""

    name: str
    value: object
    meaning: str
    source: str

    def to_dict(self) -> dict:
        """Plain-Python form (numbers, strings, None)."""
        value = self.value
        if isinstance(value, complex):
            value = [value.real, value.imag]
        return {"name": self.name, "value": value, "meaning": self.meaning, "source": self.source}


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, complex):
        return f"{value:.4g}"
    return str(value)


@dataclass
class TheoryReport:
    """What the theory says about one estimator at one equilibrium.

    Attributes:
        estimator: the estimator's name.
        findings: the :class:`Finding` lines, in reading order.
        recommendation: plain-words advice (λ range, optimal λ, k needed).
        radius: ρ(J), a :class:`SpectralEstimate` (with the eigenvalues).
        norm: ‖J‖₂, a :class:`SpectralEstimate`.
        smallest_singular_value: σ_min(I − J), a :class:`SpectralEstimate`.
        limit: the admissible damping, a :class:`DampingLimit`.
        optimum: the optimal damping, a :class:`DampingChoice`.
        steps: the k needed, a :class:`StepsNeeded` (None when no damping converges).
        ascent: the Theorem-1 :class:`AscentCheck`.
        comparison: estimate vs exact (None without a cotangent).

    """

    estimator: str
    findings: list[Finding]
    recommendation: str
    radius: SpectralEstimate = field(repr=False)
    norm: SpectralEstimate = field(repr=False)
    smallest_singular_value: SpectralEstimate = field(repr=False)
    limit: DampingLimit = field(repr=False)
    optimum: DampingChoice = field(repr=False)
    steps: StepsNeeded | None = field(repr=False)
    ascent: AscentCheck = field(repr=False)
    comparison: Comparison | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> Finding:
        for f in self.findings:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        """Plain-Python form: estimator, findings (list of dicts), recommendation."""
        return {
            "estimator": self.estimator,
            "findings": [f.to_dict() for f in self.findings],
            "recommendation": self.recommendation,
        }

    def __str__(self) -> str:
        width = max(len(f.name) for f in self.findings)
        lines = [f"gradscope theory report — {self.estimator}", ""]
        for f in self.findings:
            lines.append(f"  {f.name:<{width}}  {_fmt(f.value):>10}  {f.meaning}")
            lines.append(f"  {'':<{width}}  {'':>10}  [{f.source}]")
        lines += ["", "Recommendation:", *("  " + s for s in self.recommendation.split("\n"))]
        return "\n".join(lines)


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
    (``‖P(I − Jᵀ) − F_θᵀ‖₂ ≤ σ_min²/σ_max``: holds / fails / vacuous); with a cotangent,
    the inner product and cosine with the exact gradient; the optimal λ in (0, 1] and the
    k it needs. A failed condition is a finding, never an exception.

    Args:
        problem: the equilibrium (with parameters).
        estimator: the estimator to judge (:class:`~gradscope.Neumann`,
            :class:`~gradscope.Unrolled`, :class:`~gradscope.OneStep` or :class:`~gradscope.Exact`).
        cotangent: g = ∂ℓ/∂h* for the a-posteriori comparison (optional).
        dense: dense references (default: small problems, h* with ≤ 64 entries).
        tol: target relative adjoint error for the k recommendation.

    Returns:
        A :class:`TheoryReport`; ``print(report)`` reads as plain text.

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
        'holds'

    """
    call = "check_theory"
    check_problem(call, problem)
    check_estimator(call, estimator, "estimator")
    if cotangent is not None:
        check_tensor(call, "cotangent", cotangent)
    d = problem.h_star.numel()
    asked_dense = dense
    dense = d <= 64 if dense is None else dense
    n_sample = d // (
        problem.h_star.shape[0] if problem.batched and problem.samples_independent else 1
    )
    spectral_dense = dense or n_sample <= 64
    findings: list[Finding] = []
    add = findings.append

    residual = problem.residual.max_relative
    add(
        Finding(
            "fixed-point residual",
            residual,
            "‖F(h*) − h*‖/‖F(h*)‖ (max over samples); phantom gradients and the identities "
            "below assume it is small"
            + (" — it is NOT small here" if residual > problem.rtol else ""),
            "FixedPointProblem.residual",
        )
    )

    radius = spectral_radius(problem, DenseSpectrum() if spectral_dense else Arnoldi())
    norm = spectral_norm(problem, DenseSpectrum() if spectral_dense else Lanczos())
    smin = smallest_singular_value(
        problem, DenseSpectrum() if spectral_dense else Lanczos(max_steps=150)
    )
    rho = radius.value
    add(
        Finding(
            "ρ(J)",
            rho,
            "spectral radius of J = ∂F/∂h at h*; < 1: fixed-point iteration and the undamped "
            "Neumann series converge"
            + ("" if rho < 1 else " — here it is ≥ 1")
            + _unconverged(radius),
            "see the docs page 'The implicit function theorem and the adjoint system' (docs/explanation/implicit_gradients.rst)",
        )
    )
    add(
        Finding(
            "‖J‖₂",
            norm.value,
            "largest singular value; ≥ ρ(J), much larger for non-normal J (transient growth)"
            + _unconverged(norm),
            "derived, see the docs page 'Damping' (docs/explanation/damping.rst)",
        )
    )
    add(
        Finding(
            "σ_min(I − J)",
            smin.value,
            "distance of the adjoint system (I − Jᵀ)u = g to singular; errors are amplified "
            f"up to 1/σ_min = {1 / smin.value if smin.value > 0 else math.inf:.3g}×"
            + _unconverged(smin),
            "see the docs page 'The implicit function theorem and the adjoint system' (docs/explanation/implicit_gradients.rst)",
        )
    )

    mu = _eigenvalues(call, radius)
    limit = damping_limit(mu)
    optimum = optimal_damping(mu)
    add(Finding("λ_max", limit.value, limit.message, DERIVED))

    phantom = isinstance(estimator, (Neumann, Unrolled, OneStep))
    # OneStep is the k = 1, λ = 1 phantom gradient.
    lam = float(getattr(estimator, "damping", 1.0)) if phantom else optimum.damping
    k = int(getattr(estimator, "steps", 1)) if phantom else None
    rho_B = damped_radius(mu, lam)
    if phantom:
        add(
            Finding(
                f"λ = {lam:g} admissible",
                limit.admits(lam),
                f"ρ(B_λ) = {rho_B:.4g} for B_λ = (1 − λ)I + λJ; the series converges iff ρ(B_λ) < 1",
                DERIVED,
            )
        )
        bk = damped_power_norm(problem, lam, k, DenseSpectrum() if spectral_dense else Lanczos())
        add(
            Finding(
                f"‖B_λ^{k}‖₂",
                bk.value,
                "worst-case relative error of the k-step Neumann adjoint, ‖u* − u_k‖ ≤ "
                "‖B_λ^k‖₂‖u*‖ (u* − u_k = (Bᵀ)^k u*)",
                DERIVED,
            )
        )

    exact = estimate_gradient(problem, cotangent, Exact()) if cotangent is not None else None
    ascent = check_ascent(problem, estimator, cotangent, dense=dense, exact=exact)
    add(Finding("Theorem 1", ascent.verdict, ascent.message, THEOREM1))
    comparison = ascent.comparison
    if comparison is not None:
        add(
            Finding(
                "⟨∇̂, ∇⟩",
                ascent.inner,
                "inner product with the exact gradient for this cotangent; > 0: −∇̂ is a "
                "descent direction (measured, a posteriori)",
                "compare(estimate, Exact)",
            )
        )
        add(
            Finding(
                "cosine",
                ascent.cosine,
                "cosine similarity with the exact gradient",
                "compare(estimate, Exact)",
            )
        )
        add(
            Finding(
                "relative error",
                ascent.relative_error,
                "‖∇̂ − ∇‖/‖∇‖: the bias ε of Theorem 3 (training converges to an O(ε) floor)",
                "Geng et al. 2021, Theorem 3",
            )
        )

    kappa = (
        ascent.sigma_max / ascent.sigma_min
        if ascent.sigma_min > 1e-8 * ascent.sigma_max
        else math.inf
    )
    steps = None
    if optimum.converges or (phantom and limit.admits(lam)):
        steps = steps_needed(
            problem,
            lam if phantom and limit.admits(lam) else optimum.damping,
            tol=tol,
            kappa=kappa,
            max_steps=200,
            # Unless told, steps_needed picks for itself: one dense per-sample block (n
            # products) up to 512 entries per sample beats a Lanczos per power of B (k²).
            dense=asked_dense,
        )
        add(
            Finding(f"k needed (λ = {steps.damping:g})", steps.tolerance_steps, steps.note, DERIVED)
        )

    recommendation = _recommend(estimator, phantom, lam, k, limit, optimum, steps, ascent, rho, tol)
    return TheoryReport(
        getattr(estimator, "name", str(estimator)),
        findings,
        recommendation,
        radius,
        norm,
        smin,
        limit,
        optimum,
        steps,
        ascent,
        comparison,
    )


def _recommend(estimator, phantom, lam, k, limit, optimum, steps, ascent, rho, tol) -> str:
    out = []
    if not limit.exists:
        out.append(
            "No damping makes a phantom gradient converge here (J has an eigenvalue with "
            "Re μ ≥ 1). Use Exact(GMRES()) and check that the equilibrium is stable."
        )
        return "\n".join(out)
    top = min(1.0, limit.value)
    out.append(
        f"Admissible damping: 0 < λ {'≤' if limit.value > 1 else '<'} {top:.3g}. "
        f"Best λ in (0, 1]: {optimum.damping:.3g} (ρ(B_λ) = {optimum.radius:.3g})."
    )
    if phantom and not limit.admits(lam):
        out.append(
            f"Your λ = {lam:g} is outside this range: the Neumann series diverges; "
            f"lower it to about {optimum.damping:.2g}."
        )
    if steps is not None:
        where = f"at λ = {steps.damping:g}"
        if steps.tolerance_steps is not None:
            out.append(
                f"Steps {where}: k ≥ {steps.tolerance_steps} gives relative adjoint error ≤ "
                f"{tol:g} (from ‖B_λ^k‖₂)."
            )
        if steps.theorem1_steps is not None:
            out.append(f"Theorem 1 is guaranteed {where} from k = {steps.theorem1_steps}.")
        if (
            phantom
            and k is not None
            and steps.tolerance_steps is not None
            and k < steps.tolerance_steps
        ):
            out.append(
                f"Your k = {k} is below that: expect a biased gradient (see the cosine above)."
            )
    if ascent.verdict == "vacuous":
        out.append(
            "Theorem 1 cannot certify ascent here (σ_min(F_θ) ≈ 0); rely on the measured "
            "cosine with the exact gradient."
        )
    if rho >= 1:
        out.append(
            "ρ(J) ≥ 1: fixed-point backward solvers (as in TorchDEQ) will not converge; "
            "Exact(GMRES()) still can, as long as σ_min(I − J) > 0."
        )
    return "\n".join(out)
