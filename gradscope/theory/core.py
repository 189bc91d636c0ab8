r"""Damping bounds, steps needed and Theorem 1 (ascent direction), checked numerically.

* :func:`~gradscope.theory.damping_limit`: ``ρ(B_λ) < 1`` ⟺ every ``Re μ < 1`` and
  ``0 < λ < λ_max = min_μ 2(1 − Re μ)/|1 − μ|²`` over the eigenvalues μ of J
  [derived, :ref:`theory-damping`].
* :func:`~gradscope.theory.optimal_damping`: ``argmin_{λ ∈ (0, 1]} max_μ |1 − λ(1 − μ)|`` (convex in λ)
  [derived, :ref:`theory-damping`].
* :func:`~gradscope.theory.steps_needed`: the k with ``‖B_λ^k‖₂ ≤ 1/κ²`` (Theorem 1 then holds for NPG at
  an exact fixed point, since ``E_neu = −F_θᵀ(B_λᵀ)^k`` [derived, :ref:`theory-neumann-error`]) and
  the k with ``‖B_λ^k‖₂ ≤ tol`` (worst-case relative adjoint error), computed from the
  norms of the powers themselves, not only from ``ρ(B_λ)^k``.
* :func:`~gradscope.theory.check_ascent`: Geng et al. 2021, Theorem 1: if
  ``‖P(I − Jᵀ) − F_θᵀ‖₂ ≤ σ_min(F_θ)²/σ_max(F_θ)`` then ``⟨∇̂, ∇⟩ ≥ 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .._checks import check_damping, check_positive, check_steps, check_tensor, fail
from ..estimators import (
    Estimator,
    Exact,
    GradientEstimate,
    Unrolled,
    check_estimator,
)
from ..estimators.base import as_adjoint
from ..estimators.estimate import run_estimator
from ..metrics import Comparison, compare
from ..operators import Counted, jacobian_transpose, param_jacobian_dense, param_vjp
from ..problem import FixedPointProblem, check_problem
from ..spectral import (
    Arnoldi,
    DenseSpectrum,
    Lanczos,
    SpectralEstimate,
    spectral_radius,
)
from ..spectral.krylov import lanczos, sqrt_bound

__all__ = [
    "AscentCheck",
    "DampingChoice",
    "DampingLimit",
    "StepsNeeded",
    "check_ascent",
    "damping_limit",
    "optimal_damping",
    "param_singular_values",
    "steps_needed",
]

THEOREM1 = "Geng et al. 2021, Theorem 1"
DERIVED = "derived, see the docs page 'Damping' (docs/explanation/damping.rst)"


# ---------------------------------------------------------------------- eigenvalues
def _eigenvalues(call: str, source: object, dense: bool | None = None) -> torch.Tensor:
    """Flat complex eigenvalues of J (NaN dropped) from a problem, an estimate or a tensor."""
    if isinstance(source, FixedPointProblem):
        dense = source.h_star.numel() <= 512 if dense is None else dense
        source = spectral_radius(source, DenseSpectrum() if dense else Arnoldi())
    if isinstance(source, SpectralEstimate):
        if source.ritz_values is None:
            fail(
                call,
                f"the estimate of {source.quantity} carries no eigenvalues; expected "
                "the result of gradscope.spectral_radius.",
            )
        source = source.ritz_values
    if not isinstance(source, torch.Tensor):
        try:
            source = torch.as_tensor(source)
        except (TypeError, ValueError, RuntimeError):
            fail(
                call,
                f"got a {type(source).__name__}; expected a FixedPointProblem, the result "
                "of spectral_radius or a tensor of eigenvalues.",
                TypeError,
            )
    mu = source.detach().reshape(-1).to(torch.complex128).cpu()
    mu = mu[~torch.isnan(mu.real) & ~torch.isnan(mu.imag)]
    if mu.numel() == 0:
        fail(call, "no eigenvalues given; expected at least one.")
    return mu


def damped_radius(mu: torch.Tensor, damping: float) -> float:
    """``ρ(B_λ) = max_μ |1 − λ(1 − μ)|`` for eigenvalues μ of J [derived, :ref:`theory-damping`]."""
    return float((1 - damping * (1 - mu)).abs().max())


@dataclass(frozen=True)
class DampingLimit:
    """The damping range in which the Neumann series / damped iteration converges.

    ``ρ(B_λ) < 1`` ⟺ ``0 < λ < λ_max = min_μ 2(1 − Re μ)/|1 − μ|²`` when every
    ``Re μ < 1``; no λ > 0 works otherwise [derived, :ref:`theory-damping`].

    Attributes:
        value: λ_max, or None when some ``Re μ ≥ 1`` (no damping converges).
        eigenvalue: the eigenvalue μ that sets the limit (or has ``Re μ ≥ 1``).
        eigenvalues_used: how many eigenvalues entered.
        source: where the statement comes from.

    """

    value: float | None
    eigenvalue: complex
    eigenvalues_used: int
    source: str = DERIVED

    @property
    def exists(self) -> bool:
        """Whether some damping λ in (0, 1] gives ``ρ(B_λ) < 1``."""
        return self.value is not None

    def admits(self, damping: float) -> bool:
        """Whether ``ρ(B_damping) < 1``."""
        return self.value is not None and 0 < damping < self.value

    @property
    def message(self) -> str:
        """The finding in plain words."""
        mu = self.eigenvalue
        if self.value is None:
            return (
                f"no damping makes the series converge: J has an eigenvalue μ = {mu:.4g} "
                "with Re μ ≥ 1, so ρ(B_λ) ≥ 1 for every λ > 0. Use Exact with a Krylov "
                "solver (GMRES), or change the model (the equilibrium may be unstable)."
            )
        if self.value > 1:
            return (
                f"every damping λ in (0, 1] converges (λ_max = {self.value:.4g} > 1, set by "
                f"μ = {mu:.4g})."
            )
        return (
            f"the damping must satisfy λ < {self.value:.4g} (set by the eigenvalue "
            f"μ = {mu:.4g}); larger λ makes the Neumann series diverge."
        )


def damping_limit(source: object, *, dense: bool | None = None) -> DampingLimit:
    r"""λ_max: ``ρ(B_λ) < 1`` exactly for ``0 < λ < λ_max`` [derived, :ref:`theory-damping`].

    ``λ_max = min_μ 2(1 − Re μ)/|1 − μ|²`` over the eigenvalues μ of J, provided every
    ``Re μ < 1``; otherwise no λ > 0 works and ``value`` is None. From a problem, the
    eigenvalues are dense (small d) or all Ritz values of an Arnoldi run (the outer
    spectrum, which decides λ_max).

    Args:
        source: a :class:`~gradscope.FixedPointProblem`, the result of
            :func:`~gradscope.spectral_radius`, or a tensor of eigenvalues.
        dense: for a problem: dense eigenvalues (default when h* has ≤ 512 entries).

    Returns:
        A :class:`DampingLimit`.

    Example:
        >>> import torch, gradscope as gs
        >>> gs.theory.damping_limit(torch.tensor([-3.0, 0.5])).value  # 2·4/16 = 0.5
        0.5
        >>> gs.theory.damping_limit(torch.tensor([1.2, 0.5])).exists
        False

    """
    mu = _eigenvalues("damping_limit", source, dense)
    a = 1 - mu.real
    if bool((a <= 0).any()):
        i = int(torch.argmin(a))
        return DampingLimit(None, complex(mu[i]), mu.numel())
    limits = 2 * a / (1 - mu).abs() ** 2
    i = int(torch.argmin(limits))
    return DampingLimit(float(limits[i]), complex(mu[i]), mu.numel())


@dataclass(frozen=True)
class DampingChoice:
    """The damping that minimises ``ρ(B_λ)`` over λ in (0, 1].

    Attributes:
        damping: λ*.
        radius: ``ρ(B_λ*)``; < 1 when the series converges.
        limit: the :class:`DampingLimit`.
        source: where the statement comes from.

    """

    damping: float
    radius: float
    limit: DampingLimit
    source: str = DERIVED

    @property
    def converges(self) -> bool:
        """Whether ``ρ(B_λ*) < 1``."""
        return self.radius < 1


def optimal_damping(source: object, *, dense: bool | None = None) -> DampingChoice:
    r"""``λ* = argmin_{0 < λ ≤ 1} max_μ |1 − λ(1 − μ)|`` (convex in λ) [derived, :ref:`theory-damping`].

    The estimators take λ ≤ 1, so over-relaxation (λ > 1) is not searched. For a real
    spectrum in ``[m, M]``, ``M < 1``: ``λ* = min(1, 2/(2 − m − M))``.

    Args:
        source: as for :func:`damping_limit`.
        dense: as for :func:`damping_limit`.

    Returns:
        A :class:`DampingChoice`.

    Example:
        >>> import torch, gradscope as gs
        >>> choice = gs.theory.optimal_damping(torch.tensor([-3.0, 0.5]))  # 2/(2 + 3 − 0.5)
        >>> round(choice.damping, 6), round(choice.radius, 6)
        (0.444444, 0.777778)

    """
    mu = _eigenvalues("optimal_damping", source, dense)
    limit = damping_limit(mu)

    def f(lam: float) -> float:
        return damped_radius(mu, lam)

    # golden-section search on the convex f over [0, 1]
    lo, hi = 0.0, 1.0
    r = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - r * (hi - lo), lo + r * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(80):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - r * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + r * (hi - lo)
            f2 = f(x2)
    lam = (lo + hi) / 2
    if f(1.0) <= f(lam):
        lam = 1.0
    lam = max(lam, 1e-12)
    return DampingChoice(lam, f(lam), limit)


# ---------------------------------------------------------------------- F_θ
def _param_flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def _param_jvp(problem: FixedPointProblem, z: torch.Tensor) -> torch.Tensor:
    """``F_θ z`` for a flat parameter vector z (one JVP in the parameters)."""
    params = {n: p.detach() for n, p in problem.params.items()}
    tangents, offset = {}, 0
    for n, p in params.items():
        tangents[n] = z[offset : offset + p.numel()].reshape(p.shape)
        offset += p.numel()
    inputs = tuple(x.detach() for x in problem.inputs)
    _, out = torch.func.jvp(
        lambda q: problem.fn(q, problem.h_star, *inputs), (params,), (tangents,)
    )
    return out


def param_singular_values(
    problem: FixedPointProblem, *, dense: bool | None = None, max_steps: int = 100
) -> tuple[float, float]:
    r"""``(σ_max, σ_min)`` of ``F_θ = ∂F/∂θ`` at h* (d × p), σ_min the d-th singular value.

    ``σ_min = 0`` when p < d (more state entries than parameters) or F_θ is
    rank-deficient; Theorem 1 is then vacuous. Dense (small d·p) or Lanczos on
    ``F_θ F_θᵀ`` (one VJP and one parameter-JVP per step).

    Args:
        problem: the equilibrium (with parameters).
        dense: materialise F_θ (default when d ≤ 256 and d·p ≤ 10⁶).
        max_steps: Lanczos steps for the matrix-free path.

    Raises:
        ValueError: the problem has no parameters.

    Example:
        >>> import torch, gradscope as gs
        >>> fn = lambda p, h, x: p["W"] @ h + p["b"] + x
        >>> p = {"W": torch.zeros(2, 2, dtype=torch.float64), "b": torch.zeros(2, dtype=torch.float64)}
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> smax, smin = gs.theory.param_singular_values(gs.FixedPointProblem.from_function(fn, p, x, x))
        >>> round(smax, 10), round(smin, 10)  # F_θ = [h*ᵀ ⊗ I, I]: σ² = 1 + ‖h*‖² = 3
        (1.7320508076, 1.7320508076)

    """
    _require_params("param_singular_values", problem)
    d = problem.h_star.numel()
    p = sum(t.numel() for t in problem.params.values())
    dense = (d <= 256 and d * p <= 10**6) if dense is None else dense
    if dense:
        s = torch.linalg.svdvals(param_jacobian_dense(problem))
        return float(s[0]), float(s[d - 1]) if p >= d else 0.0
    h = problem.h_star

    def apply(v: torch.Tensor) -> torch.Tensor:  # F_θ F_θᵀ on (1, d)
        return _param_jvp(problem, _param_flat(param_vjp(problem, v.reshape(h.shape))[0])).reshape(
            1, -1
        )

    g = torch.Generator(device=h.device).manual_seed(0)
    v0 = torch.randn((1, d), generator=g, dtype=h.dtype, device=h.device)
    top, res_top, _, _ = lanczos(apply, v0, Lanczos(max_steps=max_steps), "max")
    smax = float(sqrt_bound(top, res_top)[0][0])
    if p < d:
        return smax, 0.0
    low, res_low, _, _ = lanczos(apply, v0, Lanczos(max_steps=max_steps), "min")
    return smax, float(sqrt_bound(low, res_low)[0][0])


def _require_params(call: str, problem: object) -> None:
    check_problem(call, problem)
    if not problem.params or sum(t.numel() for t in problem.params.values()) == 0:
        fail(
            call,
            "the problem has no parameters; expected at least one parameter tensor θ. "
            "Pass params={...} to FixedPointProblem.from_function or trainable parameters "
            "to from_module.",
        )


# ---------------------------------------------------------------------- steps needed
@dataclass(frozen=True)
class StepsNeeded:
    """How many damped steps k make the phantom gradient good enough.

    Attributes:
        damping: λ.
        radius: ``ρ(B_λ)``.
        norms: ``‖B_λ^k‖₂`` for k = 1, 2, ... as far as computed.
        kappa: ``κ = σ_max/σ_min`` of F_θ (inf when σ_min ≈ 0).
        theorem1_steps: least k with ``‖B_λ^k‖₂ ≤ 1/κ²`` (None: vacuous or not reached).
        tolerance: the target relative adjoint error.
        tolerance_steps: least k with ``‖B_λ^k‖₂ ≤ tol`` (the worst-case relative error of
            the Neumann adjoint, ``‖u* − u_k‖/‖u*‖``); None if not reached.
        asymptotic_steps: least k with ``ρ(B_λ)^k ≤ tol`` (what the spectral radius alone
            predicts; too optimistic for non-normal J); None when ``ρ(B_λ) ≥ 1``.
        note: the finding in plain words.

    """

    damping: float
    radius: float
    norms: list[float] = field(repr=False)
    kappa: float
    theorem1_steps: int | None
    tolerance: float
    tolerance_steps: int | None
    asymptotic_steps: int | None
    note: str
    source: str = DERIVED

    @property
    def transient_growth(self) -> bool:
        """Whether ‖B^k‖₂ exceeds 1 for some computed k (non-normal transient)."""
        return max(self.norms, default=0.0) > 1


def steps_needed(
    problem: FixedPointProblem,
    damping: float,
    *,
    tol: float = 1e-3,
    kappa: float | None = None,
    max_steps: int = 200,
    dense: bool | None = None,
) -> StepsNeeded:
    r"""The number of Neumann/UPG steps k needed at damping λ [derived, :ref:`theory-steps`].

    * Theorem 1 (Geng et al. 2021) holds for NPG at an exact fixed point once
      ``‖B_λ^k‖₂ ≤ 1/κ²``, ``κ = σ_max/σ_min`` of F_θ, because ``E_neu = −F_θᵀ(B_λᵀ)^k``.
      When σ_min ≈ 0 (p < d) the condition is vacuous.
    * The relative adjoint error is at most ``‖B_λ^k‖₂``; ``ρ(B_λ)^k`` is its asymptotic
      rate only — for non-normal J the norms may first grow.

    ‖B_λ^k‖₂ is computed for k = 1, 2, ... (densely for small per-sample blocks, else by
    Lanczos on each power: cost grows as k²) until both targets are met or ``max_steps``.

    Args:
        problem: the equilibrium.
        damping: λ in (0, 1].
        tol: target relative adjoint error (in (0, 1)).
        kappa: κ of F_θ if known (else computed by :func:`param_singular_values`).
        max_steps: the largest k examined.
        dense: dense per-sample blocks (default when a sample has ≤ 512 entries).

    Raises:
        ValueError: damping outside (0, 1], max_steps < 1, tol outside (0, 1), or no
            parameters (when κ must be computed).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 4.0], [0.0, 0.5]], dtype=torch.float64)  # non-normal
        >>> fn = lambda p, h, x: p["W"] @ h + x
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> h = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W, x)
        >>> problem = gs.FixedPointProblem.from_function(fn, {"W": W}, h, x)
        >>> k = gs.theory.steps_needed(problem, 1.0, tol=1e-3, kappa=1.0)
        >>> k.asymptotic_steps, k.tolerance_steps  # 0.5^k ≤ 1e-3 at k=10; ‖W^k‖ needs more
        (10, 18)

    """
    call = "steps_needed"
    check_problem(call, problem)
    check_damping(call, damping)
    check_steps(call, "max_steps", max_steps)
    check_positive(call, "tol", tol)
    if tol >= 1:
        fail(call, f"tol={tol!r}; expected a relative error in (0, 1).")
    lam = float(damping)
    if kappa is None:
        smax, smin = param_singular_values(problem)
        kappa = smax / smin if smin > 1e-12 * smax else math.inf
    layout = jacobian_transpose(problem).layout()
    dense = layout.n <= 512 if dense is None else dense
    target1 = 1 / kappa**2 if math.isfinite(kappa) else 0.0
    norms: list[float] = []
    k1 = ktol = None
    if dense:
        J = jacobian_transpose(problem).T.dense(per_sample=layout.by_sample)
        J = J if layout.by_sample else J[None]
        eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
        B = (1 - lam) * eye + lam * J
        mu = torch.linalg.eigvals(J).reshape(-1)
        power = B
        for k in range(1, max_steps + 1):
            norms.append(float(torch.linalg.matrix_norm(power, 2).max()))
            k1, ktol = _first(k, norms[-1], target1, tol, k1, ktol)
            if (k1 is not None or target1 == 0) and ktol is not None:
                break
            power = power @ B
    else:
        from ..spectral import damped_power_norm

        mu = spectral_radius(problem).ritz_values.reshape(-1)
        mu = mu[~torch.isnan(mu.real)]
        for k in range(1, max_steps + 1):
            norms.append(damped_power_norm(problem, lam, k, Lanczos(max_steps=30)).value)
            k1, ktol = _first(k, norms[-1], target1, tol, k1, ktol)
            if (k1 is not None or target1 == 0) and ktol is not None:
                break
    radius = damped_radius(mu.to(torch.complex128).cpu(), lam)
    asymptotic = math.ceil(math.log(tol) / math.log(radius)) if 0 < radius < 1 else None
    if radius == 0:
        asymptotic = 1
    notes = []
    if not math.isfinite(kappa):
        notes.append(
            "Theorem 1's condition ‖B^k‖ ≤ 1/κ² is vacuous: σ_min(F_θ) ≈ 0 "
            "(fewer parameters than state entries, or F_θ rank-deficient)."
        )
    elif k1 is None:
        notes.append(f"‖B^k‖ did not reach 1/κ² = {target1:.3g} within k ≤ {len(norms)}.")
    else:
        notes.append(
            f"Theorem 1 holds for NPG(k, {lam:g}) from k = {k1} (‖B^k‖ ≤ 1/κ², κ = {kappa:.3g})."
        )
    if ktol is None:
        notes.append(f"‖B^k‖ did not reach tol = {tol:g} within k ≤ {len(norms)}.")
    else:
        notes.append(f"relative adjoint error ≤ {tol:g} from k = {ktol}.")
    if max(norms) > 1 and radius < 1:
        peak = max(range(len(norms)), key=norms.__getitem__) + 1
        notes.append(
            f"J is non-normal: ‖B^k‖ grows to {max(norms):.3g} at k = {peak} before "
            f"decaying, although ρ(B) = {radius:.3g} < 1; ρ(B)^k alone would predict "
            f"k = {asymptotic}."
        )
    return StepsNeeded(lam, radius, norms, float(kappa), k1, tol, ktol, asymptotic, " ".join(notes))


def _first(k, norm, target1, tol, k1, ktol):
    if k1 is None and target1 > 0 and norm <= target1:
        k1 = k
    if ktol is None and norm <= tol:
        ktol = k
    return k1, ktol


# ---------------------------------------------------------------------- Theorem 1
@dataclass(frozen=True)
class AscentCheck:
    r"""Theorem 1 (Geng et al. 2021) for one estimator, with the a-posteriori facts.

    With ``E = P(I − Jᵀ) − F_θᵀ`` (P the estimator's linear map ``g ↦ ∇̂``): if
    ``‖E‖₂ ≤ σ_min²/σ_max`` then ``⟨∇̂, ∇⟩ ≥ 0`` for every cotangent g.

    Attributes:
        estimator: the estimator's name.
        error_norm: ``‖E‖₂`` (matrix-free: a Lanczos estimate plus its residual bound).
        sigma_max: ``σ_max(F_θ)``.
        sigma_min: ``σ_min(F_θ)``, the d-th singular value (0 when p < d).
        threshold: ``σ_min²/σ_max``.
        verdict: ``"holds"`` (condition met: ascent guaranteed), ``"fails"`` (condition not
            met: no guarantee either way) or ``"vacuous"`` (σ_min ≈ 0: the theorem says
            nothing).
        method: ``"dense"`` or ``"matrix-free"``.
        inner: ``⟨∇̂, ∇⟩`` for the given cotangent (None without one).
        cosine: cosine of ∇̂ and ∇ (None without a cotangent).
        relative_error: ``‖∇̂ − ∇‖/‖∇‖`` (None without a cotangent).
        comparison: the full :class:`~gradscope.metrics.Comparison` (None without a cotangent).
        warnings: numerical warnings raised while building P (deduplicated).
        source: where the statement comes from.

    """

    estimator: str
    error_norm: float
    sigma_max: float
    sigma_min: float
    threshold: float
    verdict: str
    method: str
    inner: float | None = None
    cosine: float | None = None
    relative_error: float | None = None
    comparison: Comparison | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = field(default=(), repr=False)
    source: str = THEOREM1

    @property
    def holds(self) -> bool:
        """Whether the sufficient condition is met (ascent guaranteed)."""
        return self.verdict == "holds"

    @property
    def message(self) -> str:
        """The finding in plain words."""
        head = (
            f"‖P(I − Jᵀ) − F_θᵀ‖₂ = {self.error_norm:.3g} vs σ_min²/σ_max = "
            f"{self.threshold:.3g} (σ_max = {self.sigma_max:.3g}, σ_min = {self.sigma_min:.3g})"
        )
        if self.verdict == "holds":
            return f"{head}: the condition holds, so {self.estimator} is an ascent direction for every cotangent."
        if self.verdict == "vacuous":
            return (
                f"{head}: vacuous — σ_min(F_θ) ≈ 0 (fewer parameters than state entries or "
                "F_θ rank-deficient), so Theorem 1 guarantees nothing; look at the measured "
                "cosine instead."
            )
        return (
            f"{head}: the sufficient condition fails; ascent is not guaranteed (it may still "
            "hold — see the measured inner product)."
        )


def _phantom_transpose(problem: FixedPointProblem, estimator: Estimator, J):
    """``z ↦ Pᵀ z`` (parameter vector to state) for the estimator's map ``P : g ↦ ∇̂``.

    ``P g = F_θᵀ u(Jᵀ, g)`` where the adjoint ``u`` is a polynomial or rational function of
    ``Jᵀ`` applied to g; its transpose is the same function of ``J``, so
    ``Pᵀ z = u(J, F_θ z)``: the estimator's own :meth:`~gradscope.Estimator.adjoint`, called
    with J. :class:`~gradscope.Unrolled` differentiates its trajectory instead, so its
    transpose is a parameter JVP through the k unrolled steps.
    """
    if isinstance(estimator, Unrolled):
        inputs = tuple(x.detach() for x in problem.inputs)
        params = {n: p.detach() for n, p in problem.params.items()}

        def unroll(params):
            return estimator.unroll(lambda h: problem.fn(params, h, *inputs), problem.h_star)

        def unrolled_T(z: torch.Tensor) -> torch.Tensor:  # ∂h_k/∂θ · z
            tangents, offset = {}, 0
            for n, p in params.items():
                tangents[n] = z[offset : offset + p.numel()].reshape(p.shape)
                offset += p.numel()
            return torch.func.jvp(unroll, (params,), (tangents,))[1]

        return unrolled_T

    def adjoint_T(z: torch.Tensor) -> torch.Tensor:
        v = _param_jvp(problem, z)
        return as_adjoint(estimator.adjoint(J, v), estimator.name, v).value

    return adjoint_T


def _apply_P(problem, estimator, g, caught: list) -> torch.Tensor:
    estimate = run_estimator(problem, g, estimator, call="check_ascent")
    if not estimate.status.ok:
        caught.append(estimate.failure_message("check_ascent"))
    return estimate.flat()


def check_ascent(
    problem: FixedPointProblem,
    estimator: Estimator,
    cotangent: torch.Tensor | None = None,
    *,
    dense: bool | None = None,
    exact: GradientEstimate | None = None,
    vacuous_rtol: float = 1e-8,
    max_steps: int = 60,
) -> AscentCheck:
    r"""Check Theorem 1 of Geng et al. (2021) for ``estimator`` at this equilibrium.

    ``E = P(I − Jᵀ) − F_θᵀ`` with ``P g`` the estimator's parameter gradient for cotangent
    g. Dense path (reference, small d): F_θ from :meth:`JacobianOperators.param_jacobian_dense`,
    P from the estimator applied to the d basis cotangents, then ``svdvals``. Matrix-free:
    Lanczos on ``EᵀE`` with ``E w = P((I − Jᵀ)w) − F_θᵀ w`` and
    ``Eᵀ z = (I − J)Pᵀ z − F_θ z`` (``Pᵀ`` by parameter JVPs: through the k unrolled steps
    for UPG, ``λ Σ B^t F_θ z`` for NPG, a solve with ``I − J`` for Exact).

    Args:
        problem: the equilibrium (with parameters).
        estimator: :class:`~gradscope.Exact`, :class:`~gradscope.Unrolled`,
            :class:`~gradscope.Neumann` or :class:`~gradscope.OneStep`.
        cotangent: g for the a-posteriori facts (inner product and cosine with the exact
            gradient, relative error); optional.
        dense: dense path (default when h* has ≤ 64 entries).
        exact: a precomputed exact gradient for ``cotangent`` (else ``Exact()`` is run).
        vacuous_rtol: σ_min ≤ vacuous_rtol·σ_max counts as 0 (vacuous).
        max_steps: Lanczos steps for the matrix-free path.

    Returns:
        An :class:`AscentCheck`. A failed condition is a finding, never raised.

    Raises:
        ValueError: the problem has no parameters; TypeError: bad estimator.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.2, 0.1], [0.0, 0.3]], dtype=torch.float64)
        >>> fn = lambda p, h, x: p["W"] @ h + p["b"] + x
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> p = {"W": W, "b": torch.zeros(2, dtype=torch.float64)}
        >>> h = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W, x)
        >>> problem = gs.FixedPointProblem.from_function(fn, p, h, x)
        >>> check = gs.theory.check_ascent(problem, gs.Neumann(10, 1.0), torch.ones(2, dtype=torch.float64))
        >>> check.verdict, check.inner > 0
        ('holds', True)

    """
    call = "check_ascent"
    _require_params(call, problem)
    check_estimator(call, estimator, "estimator")
    h = problem.h_star
    d = h.numel()
    dense = d <= 64 if dense is None else dense
    JT = Counted(jacobian_transpose(problem))
    J = JT.T
    caught: list[str] = []
    if dense:
        F = param_jacobian_dense(problem)  # (d, p)
        eye = torch.eye(d, dtype=h.dtype, device=h.device)
        P = torch.stack(
            [_apply_P(problem, estimator, eye[i].reshape(h.shape), caught) for i in range(d)], dim=1
        )  # (p, d)
        E = P @ (eye - JT.dense()) - F.T
        error = float(torch.linalg.matrix_norm(E, 2))
        s = torch.linalg.svdvals(F)
        smax = float(s[0])
        smin = float(s[d - 1]) if F.shape[1] >= d else 0.0
        method = "dense"
    else:
        PT = _phantom_transpose(problem, estimator, J)
        I_minus_JT, I_minus_J = JT.identity() - JT, J.identity() - J

        def apply(v: torch.Tensor) -> torch.Tensor:  # EᵀE on (1, d)
            w = v.reshape(h.shape)
            Ew = _apply_P(problem, estimator, I_minus_JT(w), caught) - _param_flat(
                param_vjp(problem, w)[0]
            )
            ETEw = I_minus_J(PT(Ew)) - _param_jvp(problem, Ew)
            return ETEw.reshape(1, -1)

        g0 = torch.Generator(device=h.device).manual_seed(0)
        v0 = torch.randn((1, d), generator=g0, dtype=h.dtype, device=h.device)
        theta, res, _, _ = lanczos(apply, v0, Lanczos(max_steps=max_steps), "max")
        sigma, bound = sqrt_bound(theta, res)
        error = float(sigma[0] + bound[0])  # conservative: upper end of the Ritz interval
        smax, smin = param_singular_values(problem, dense=False)
        method = "matrix-free"
    threshold = smin**2 / smax if smax > 0 else 0.0
    if smin <= vacuous_rtol * smax:
        verdict = "vacuous"
    elif error <= threshold:
        verdict = "holds"
    else:
        verdict = "fails"
    inner = cosine = rel = None
    comparison = None
    if cotangent is not None:
        cotangent = check_tensor(call, "cotangent", cotangent)
        if exact is None:
            exact = run_estimator(problem, cotangent, Exact(), call=call)
            if not exact.status.ok:
                caught.append(exact.failure_message(call))
        estimate = run_estimator(problem, cotangent, estimator, call=call)
        if not estimate.status.ok:
            caught.append(estimate.failure_message(call))
        comparison = compare(estimate, exact)
        inner, cosine, rel = comparison.inner, comparison.cosine, comparison.relative_error
    unique = tuple(dict.fromkeys(caught))
    return AscentCheck(
        getattr(estimator, "name", str(estimator)),
        error,
        smax,
        smin,
        threshold,
        verdict,
        method,
        inner,
        cosine,
        rel,
        comparison,
        unique,
    )
