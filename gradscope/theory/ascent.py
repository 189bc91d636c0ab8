r"""Theorem 1 of Geng et al. (2021), checked numerically: a sufficient condition for ascent.

With ``E = P(I − Jᵀ) − F_θᵀ`` (P the estimator's linear map ``g ↦ ∇̂``): if
``‖E‖₂ ≤ σ_min(F_θ)²/σ_max(F_θ)`` then ``⟨∇̂, ∇⟩ ≥ 0`` for every cotangent g
(:ref:`theory-theorem1`). :func:`~gradscope.theory.check_ascent` computes both sides,
densely or matrix-free, and returns a :class:`~gradscope.theory.Verdict`;
:func:`~gradscope.theory.param_singular_values` gives σ_max and σ_min of F_θ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._checks import check_tensor
from ..estimators import Estimator, Exact, GradientEstimate, Unrolled, check_estimator
from ..estimators.base import as_adjoint
from ..estimators.estimate import run_estimator
from ..layout import SampleLayout
from ..metrics import Comparison, compare
from ..operators import (
    Counted,
    LinearOperator,
    jacobian_transpose,
    param_jacobian_dense,
    param_jvp,
    param_vjp,
)
from ..operators.jacobian import flatten_params, jvp_by_two_vjps, no_forward_ad, unflatten_params
from ..problem import FixedPointProblem
from ..spectral import Lanczos
from ..spectral.krylov import flat_map, lanczos, sqrt_bound, start_block
from .param_jacobian import param_singular_values, require_params
from .verdict import THEOREM1, Verdict

__all__ = ["AscentCheck", "check_ascent"]

StateMap = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------- the check
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
        verdict: a :class:`~gradscope.theory.Verdict`: ``HOLDS`` (condition met: ascent guaranteed),
            ``FAILS`` (condition not met: no guarantee either way) or ``VACUOUS``
            (σ_min ≈ 0: the theorem says nothing). It equals its string value
            (``check.verdict == "holds"``).
        method: ``"dense"`` or ``"matrix-free"``.
        inner: ``⟨∇̂, ∇⟩`` for the given cotangent (None without one).
        cosine: cosine of ∇̂ and ∇ (None without a cotangent).
        relative_error: ``‖∇̂ − ∇‖/‖∇‖`` (None without a cotangent).
        comparison: the full :class:`~gradscope.metrics.Comparison` (None without a cotangent).
        warnings: numerical warnings raised while building P (deduplicated).
        source: where the statement comes from.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.2, 0.1], [0.0, 0.3]], dtype=torch.float64)
        >>> p = {"W": W, "b": torch.zeros(2, dtype=torch.float64)}
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h + b with b = 0: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h + p["b"], p, h)
        >>> check = gs.theory.check_ascent(problem, gs.Neumann(10, 1.0), torch.ones(2, dtype=torch.float64))
        >>> check.holds, check.verdict == "holds", round(check.sigma_min, 6), check.inner > 0
        (True, True, 1.0, True)

    """

    estimator: str
    error_norm: float
    sigma_max: float
    sigma_min: float
    threshold: float
    verdict: Verdict
    method: str
    inner: float | None = None
    cosine: float | None = None
    relative_error: float | None = None
    comparison: Comparison | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = field(default=(), repr=False)
    source: str = THEOREM1

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))  # a string is accepted

    @property
    def holds(self) -> bool:
        """Whether the sufficient condition is met (ascent guaranteed)."""
        return self.verdict is Verdict.HOLDS

    @property
    def message(self) -> str:
        """The finding in plain words."""
        head = (
            f"‖P(I − Jᵀ) − F_θᵀ‖₂ = {self.error_norm:.3g} vs σ_min²/σ_max = "
            f"{self.threshold:.3g} (σ_max = {self.sigma_max:.3g}, σ_min = {self.sigma_min:.3g})"
        )
        if self.verdict is Verdict.HOLDS:
            return f"{head}: the condition holds, so {self.estimator} is an ascent direction for every cotangent."
        if self.verdict is Verdict.VACUOUS:
            return (
                f"{head}: vacuous — σ_min(F_θ) ≈ 0 (fewer parameters than state entries or "
                "F_θ rank-deficient), so Theorem 1 guarantees nothing; look at the measured "
                "cosine instead."
            )
        return (
            f"{head}: the sufficient condition fails; ascent is not guaranteed (it may still "
            "hold — see the measured inner product)."
        )


def _phantom_transpose(
    problem: FixedPointProblem, estimator: Estimator, J: LinearOperator
) -> StateMap:
    """``z ↦ Pᵀ z`` (parameter vector to state) for the estimator's map ``P : g ↦ ∇̂``.

    ``P g = F_θᵀ u(Jᵀ, g)`` where the adjoint ``u`` is a polynomial or rational function of
    ``Jᵀ`` applied to g; its transpose is the same function of ``J``, so
    ``Pᵀ z = u(J, F_θ z)``: the estimator's own :meth:`~gradscope.Estimator.adjoint`, called
    with J. :class:`~gradscope.Unrolled` differentiates its trajectory instead, so its
    transpose is a parameter JVP through the k unrolled steps.

    Returns:
        The map ``z ↦ Pᵀ z``.

    """
    if isinstance(estimator, Unrolled):
        inputs = tuple(x.detach() for x in problem.inputs)
        params = {n: p.detach() for n, p in problem.params.items()}

        def unroll(params):
            return estimator.unroll(lambda h: problem.fn(params, h, *inputs), problem.h_star)

        def unrolled_T(z: torch.Tensor) -> torch.Tensor:  # ∂h_k/∂θ · z
            tangents = unflatten_params(z, params)
            try:
                return torch.func.jvp(unroll, (params,), (tangents,))[1]
            except NotImplementedError as error:  # an op without forward AD (weight norm)
                if not no_forward_ad(error):
                    raise
            leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
            with torch.enable_grad():
                out = unroll(leaves)
            return jvp_by_two_vjps(out, list(leaves.values()))(list(tangents.values()))

        return unrolled_T

    def adjoint_T(z: torch.Tensor) -> torch.Tensor:
        v = param_jvp(problem, z)
        return as_adjoint(estimator.adjoint(J, v), estimator.name, v).value

    return adjoint_T


def _apply_P(problem, estimator, g, caught: list) -> torch.Tensor:
    """``P g``: the estimator's flat parameter gradient for cotangent g (status collected)."""
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
    g. Dense path (reference, small d): F_θ from
    :func:`~gradscope.operators.param_jacobian_dense`, P from the estimator applied to the
    d basis cotangents, then ``svdvals``. Matrix-free: Lanczos on ``EᵀE`` with
    ``E w = P((I − Jᵀ)w) − F_θᵀ w`` and ``Eᵀ z = (I − J)Pᵀ z − F_θ z``, where ``Pᵀ`` is
    the estimator's own :meth:`~gradscope.Estimator.adjoint` called with J instead of Jᵀ
    (``λ Σ B^t F_θ z`` for NPG, a solve with ``I − J`` for Exact), or a parameter JVP
    through the k unrolled steps for UPG.

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
        An :class:`~gradscope.theory.AscentCheck` whose ``verdict`` is a :class:`~gradscope.theory.Verdict`. A failed
        condition is a finding, never raised.

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
        (<Verdict.HOLDS: 'holds'>, True)

    """
    call = "check_ascent"
    require_params(call, problem)
    check_estimator(call, estimator, "estimator")
    dense = problem.h_star.numel() <= 64 if dense is None else dense
    caught: list[str] = []
    if dense:
        error, smax, smin = _dense_error(problem, estimator, caught)
    else:
        error, smax, smin = _matrix_free_error(problem, estimator, max_steps, caught)
    threshold = smin**2 / smax if smax > 0 else 0.0
    verdict = _verdict(error, threshold, smax, smin, vacuous_rtol)
    comparison = None
    if cotangent is not None:
        comparison = _measure(call, problem, estimator, cotangent, exact, caught)
    return AscentCheck(
        getattr(estimator, "name", str(estimator)),
        error,
        smax,
        smin,
        threshold,
        verdict,
        "dense" if dense else "matrix-free",
        None if comparison is None else comparison.inner,
        None if comparison is None else comparison.cosine,
        None if comparison is None else comparison.relative_error,
        comparison,
        tuple(dict.fromkeys(caught)),
    )


def _dense_error(
    problem: FixedPointProblem, estimator: Estimator, caught: list[str]
) -> tuple[float, float, float]:
    """``(‖E‖₂, σ_max(F_θ), σ_min(F_θ))`` from the materialised matrices (small d)."""
    h = problem.h_star
    d = h.numel()
    F = param_jacobian_dense(problem)  # (d, p)
    eye = torch.eye(d, dtype=h.dtype, device=h.device)
    P = torch.stack(
        [_apply_P(problem, estimator, eye[i].reshape(h.shape), caught) for i in range(d)], dim=1
    )  # (p, d)
    E = P @ (eye - jacobian_transpose(problem).dense()) - F.T
    s = torch.linalg.svdvals(F)
    smin = float(s[d - 1]) if F.shape[1] >= d else 0.0
    return float(torch.linalg.matrix_norm(E, 2)), float(s[0]), smin


def _matrix_free_error(
    problem: FixedPointProblem, estimator: Estimator, max_steps: int, caught: list[str]
) -> tuple[float, float, float]:
    """``(‖E‖₂, σ_max(F_θ), σ_min(F_θ))`` by Lanczos on ``EᵀE`` and on ``F_θF_θᵀ``.

    ``‖E‖₂`` is the upper end of the Ritz interval (conservative).

    Returns:
        ``(‖E‖₂, σ_max, σ_min)``.

    """
    JT = Counted(jacobian_transpose(problem))
    J = JT.T
    PT = _phantom_transpose(problem, estimator, J)
    I_minus_JT, I_minus_J = JT.identity() - JT, J.identity() - J

    def normal(w: torch.Tensor) -> torch.Tensor:  # EᵀE w
        Ew = _apply_P(problem, estimator, I_minus_JT(w), caught) - flatten_params(
            param_vjp(problem, w)[0]
        )
        return I_minus_J(PT(Ew)) - param_jvp(problem, Ew)

    layout = SampleLayout(problem.h_star.shape, per_sample=False)
    theta, res, _, _ = lanczos(
        flat_map(normal, layout),
        start_block(layout, problem.h_star, 0),
        Lanczos(max_steps=max_steps),
        "max",
    )
    sigma, bound = sqrt_bound(theta, res)
    smax, smin = param_singular_values(problem, dense=False)
    return float(sigma[0] + bound[0]), smax, smin


def _verdict(
    error: float, threshold: float, smax: float, smin: float, vacuous_rtol: float
) -> Verdict:
    """Theorem 1's condition ``‖E‖₂ ≤ σ_min²/σ_max``, vacuous when σ_min ≈ 0."""
    if smin <= vacuous_rtol * smax:
        return Verdict.VACUOUS
    return Verdict.HOLDS if error <= threshold else Verdict.FAILS


def _measure(
    call: str,
    problem: FixedPointProblem,
    estimator: Estimator,
    cotangent: torch.Tensor,
    exact: GradientEstimate | None,
    caught: list[str],
) -> Comparison:
    """The a-posteriori facts for one cotangent: the estimate against the exact gradient."""
    cotangent = check_tensor(call, "cotangent", cotangent)
    if exact is None:
        exact = run_estimator(problem, cotangent, Exact(), call=call)
        if not exact.status.ok:
            caught.append(exact.failure_message(call))
    estimate = run_estimator(problem, cotangent, estimator, call=call)
    if not estimate.status.ok:
        caught.append(estimate.failure_message(call))
    return compare(estimate, exact)
