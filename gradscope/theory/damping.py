r"""Damping bounds: which λ makes the damped series converge, and which λ is best.

* :func:`~gradscope.theory.damping_limit`: ``ρ(B_λ) < 1`` ⟺ every ``Re μ < 1`` and
  ``0 < λ < λ_max = min_μ 2(1 − Re μ)/|1 − μ|²`` over the eigenvalues μ of J
  [derived, :ref:`theory-damping`].
* :func:`~gradscope.theory.optimal_damping`: ``argmin_{λ ∈ (0, 1]} max_μ |1 − λ(1 − μ)|``
  (convex in λ) [derived, :ref:`theory-damping`].
* :func:`~gradscope.theory.damped_radius`: ``ρ(B_λ)`` from the eigenvalues of J.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import fail
from ..problem import FixedPointProblem
from ..spectral import Arnoldi, DenseSpectrum, SpectralEstimate, spectral_radius

__all__ = [
    "DERIVED",
    "DampingChoice",
    "DampingLimit",
    "damped_radius",
    "damping_limit",
    "eigenvalues_of",
    "optimal_damping",
]

DERIVED = "derived, see the docs page 'Damping' (docs/explanation/damping.rst)"


def eigenvalues_of(call: str, source: object, dense: bool | None = None) -> torch.Tensor:
    """Flat complex eigenvalues of J (NaN dropped) from a problem, an estimate or a tensor.

    A problem's are dense (``dense``, default when h* has ≤ 512 entries) or all the Ritz
    values of an Arnoldi run (the outer spectrum).

    Returns:
        A 1-D complex tensor of the eigenvalues.

    """
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

    Example:
        >>> import torch, gradscope as gs
        >>> limit = gs.theory.damping_limit(torch.tensor([-3.0, 0.5], dtype=torch.float64))
        >>> round(limit.value, 6), limit.eigenvalue, limit.admits(0.4), limit.admits(0.6)
        (0.5, (-3+0j), True, False)

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
        A :class:`~gradscope.theory.DampingLimit`.

    Example:
        >>> import torch, gradscope as gs
        >>> gs.theory.damping_limit(torch.tensor([-3.0, 0.5])).value  # 2·4/16 = 0.5
        0.5
        >>> gs.theory.damping_limit(torch.tensor([1.2, 0.5])).exists
        False

    """
    mu = eigenvalues_of("damping_limit", source, dense)
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
        limit: the :class:`~gradscope.theory.DampingLimit`.
        source: where the statement comes from.

    Example:
        >>> import torch, gradscope as gs
        >>> choice = gs.theory.optimal_damping(torch.tensor([-3.0, 0.5], dtype=torch.float64))
        >>> round(choice.damping, 6), round(choice.radius, 6), choice.converges
        (0.444444, 0.777778, True)

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
        source: as for :func:`~gradscope.theory.damping_limit`.
        dense: as for :func:`~gradscope.theory.damping_limit`.

    Returns:
        A :class:`~gradscope.theory.DampingChoice`.

    Example:
        >>> import torch, gradscope as gs
        >>> choice = gs.theory.optimal_damping(torch.tensor([-3.0, 0.5]))  # 2/(2 + 3 − 0.5)
        >>> round(choice.damping, 6), round(choice.radius, 6)
        (0.444444, 0.777778)

    """
    mu = eigenvalues_of("optimal_damping", source, dense)
    limit = damping_limit(mu)

    def f(lam: float) -> float:
        return damped_radius(mu, lam)

    lam = _golden_section(f)
    if f(1.0) <= f(lam):
        lam = 1.0
    lam = max(lam, 1e-12)
    return DampingChoice(lam, f(lam), limit)


def _golden_section(f: Callable[[float], float], iterations: int = 80) -> float:
    """The minimiser of a convex (unimodal) f on [0, 1] by golden-section search."""
    lo, hi = 0.0, 1.0
    r = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - r * (hi - lo), lo + r * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(iterations):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - r * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + r * (hi - lo)
            f2 = f(x2)
    return (lo + hi) / 2
