r"""How many damped steps k a phantom gradient needs, from the norms ``‖B_λ^k‖₂``.

:func:`~gradscope.theory.steps_needed`: the k with ``‖B_λ^k‖₂ ≤ 1/κ²`` (Theorem 1 then
holds for NPG at an exact fixed point, since ``E_neu = −F_θᵀ(B_λᵀ)^k``
[derived, :ref:`theory-neumann-error`]) and the k with ``‖B_λ^k‖₂ ≤ tol`` (worst-case
relative adjoint error), computed from the norms of the powers themselves, not only from
``ρ(B_λ)^k`` [derived, :ref:`theory-steps`].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from .._checks import check_damping, check_positive, check_steps, fail
from ..operators import jacobian_transpose
from ..problem import FixedPointProblem, check_problem
from ..spectral import Lanczos, damped_power_norm, spectral_radius
from .ascent import param_singular_values
from .damping import DERIVED, damped_radius, eigenvalues_of

__all__ = ["StepsNeeded", "steps_needed"]


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

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.0], [0.0, -0.3]], dtype=torch.float64)  # normal: ‖W^k‖₂ = 0.5^k
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> k = gs.theory.steps_needed(problem, 1.0, tol=1e-3, kappa=1.0)
        >>> round(k.radius, 6), k.tolerance_steps, k.asymptotic_steps, k.transient_growth
        (0.5, 10, 10, False)

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
        kappa: κ of F_θ if known (else computed by :func:`~gradscope.theory.param_singular_values`).
        max_steps: the largest k examined.
        dense: dense per-sample blocks (default when a sample has ≤ 512 entries).

    Returns:
        A :class:`~gradscope.theory.StepsNeeded`: the least k for each target (None where not reached
        within ``max_steps``) and the norms computed.

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
    _check_arguments(call, problem, damping, max_steps, tol)
    lam = float(damping)
    if kappa is None:
        smax, smin = param_singular_values(problem)
        kappa = smax / smin if smin > 1e-12 * smax else math.inf
    JT = jacobian_transpose(problem)
    layout = JT.layout()
    dense = layout.n <= 512 if dense is None else dense
    if dense:
        J = JT.T.dense(per_sample=layout.by_sample)
        J = J if layout.by_sample else J[None]
        mu = eigenvalues_of(call, torch.linalg.eigvals(J))
        norms_of_powers = _dense_power_norms(J, lam, max_steps)
    else:
        mu = eigenvalues_of(call, spectral_radius(problem))
        norms_of_powers = (
            damped_power_norm(problem, lam, k, Lanczos(max_steps=30)).value
            for k in range(1, max_steps + 1)
        )
    target1 = 1 / kappa**2 if math.isfinite(kappa) else 0.0
    norms, k1, ktol = _scan(norms_of_powers, target1, tol)
    radius = damped_radius(mu, lam)
    asymptotic = math.ceil(math.log(tol) / math.log(radius)) if 0 < radius < 1 else None
    if radius == 0:
        asymptotic = 1
    note = _note(lam, float(kappa), target1, tol, norms, k1, ktol, radius, asymptotic)
    return StepsNeeded(lam, radius, norms, float(kappa), k1, tol, ktol, asymptotic, note)


def _check_arguments(
    call: str, problem: object, damping: float, max_steps: int, tol: float
) -> None:
    check_problem(call, problem)
    check_damping(call, damping)
    check_steps(call, "max_steps", max_steps)
    check_positive(call, "tol", tol)
    if tol >= 1:
        fail(call, f"tol={tol!r}; expected a relative error in (0, 1).")


def _dense_power_norms(J: torch.Tensor, lam: float, max_steps: int) -> Iterator[float]:
    """``‖B_λ^k‖₂`` (largest over the blocks of J) for k = 1, ..., max_steps, lazily."""
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    B = (1 - lam) * eye + lam * J
    power = B
    for _ in range(max_steps):
        yield float(torch.linalg.matrix_norm(power, 2).max())
        power = power @ B


def _scan(
    norms_of_powers: Iterable[float], target1: float, tol: float
) -> tuple[list[float], int | None, int | None]:
    """Read ``‖B^k‖₂`` until both targets are met: (norms, k for 1/κ², k for tol)."""
    norms: list[float] = []
    k1 = ktol = None
    for k, norm in enumerate(norms_of_powers, start=1):
        norms.append(norm)
        if k1 is None and target1 > 0 and norm <= target1:
            k1 = k
        if ktol is None and norm <= tol:
            ktol = k
        if (k1 is not None or target1 == 0) and ktol is not None:
            break
    return norms, k1, ktol


def _note(
    lam: float,
    kappa: float,
    target1: float,
    tol: float,
    norms: list[float],
    k1: int | None,
    ktol: int | None,
    radius: float,
    asymptotic: int | None,
) -> str:
    """The finding of :func:`~gradscope.theory.steps_needed` in plain words."""
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
    return " ".join(notes)
