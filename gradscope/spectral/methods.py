r"""The spectral methods (strategy objects) and the :class:`~gradscope.spectral.SpectralEstimate` they return.

A method says how a spectral quantity is computed; ``gradscope.spectral.radius``
and ``gradscope.spectral.norms`` run it on the map asked for, a problem's J or any
:class:`~gradscope.operators.LinearOperator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import check_positive, check_seed, check_steps, fail
from ..operators import LinearOperator
from ..problem import FixedPointProblem

__all__ = [
    "Arnoldi",
    "DenseSpectrum",
    "Lanczos",
    "NormMethod",
    "PowerIteration",
    "RadiusMethod",
    "ScipyEigs",
    "SpectralEstimate",
    "check_method",
    "check_operand",
]


# ---------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Arnoldi:
    """Arnoldi iteration with full re-orthogonalisation (Krylov, for eigenvalues).

    Ritz values of the Hessenberg matrix ``H_m = V_mᵀ Jᵀ V_m`` approximate the outer
    eigenvalues of J; the Ritz residual of a pair ``(θ, y)`` is ``|h_{m+1,m}| |y_m|``.

    Args:
        max_steps: Krylov dimension m (products per sample), at most the sample size.
        rtol: stop once the leading Ritz residual is ≤ ``rtol·|θ|`` on every sample.
        eigenvalues: how many leading Ritz values to report.
        check_every: test convergence every this many steps (each test is one small
            batched ``eig``).
        seed: seed of the private generator of the starting vector (the global RNG is
            not touched).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2], [0.0, -0.3]], dtype=torch.float64)  # μ = 0.5, −0.3
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> est = gs.spectral_radius(problem, gs.spectral.Arnoldi(max_steps=2))
        >>> round(est.value, 6), est.converged
        (0.5, True)

    """

    max_steps: int = 100
    rtol: float = 1e-8
    eigenvalues: int = 6
    check_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("Arnoldi", "max_steps", self.max_steps)
        check_positive("Arnoldi", "rtol", self.rtol)
        check_steps("Arnoldi", "eigenvalues", self.eigenvalues)
        check_steps("Arnoldi", "check_every", self.check_every)
        check_seed("Arnoldi", self.seed)


@dataclass(frozen=True)
class Lanczos:
    """Symmetric Lanczos with full re-orthogonalisation on ``AᵀA`` (for singular values).

    One step costs one product with A and one with Aᵀ. The Ritz residual
    ``|β_m y_m|`` bounds the distance of a Ritz value of ``AᵀA`` to the spectrum.

    Args:
        max_steps: Lanczos steps (at most the sample size).
        rtol: stop once the wanted Ritz value's residual is ≤ ``rtol·θ`` on every sample.
        check_every: test convergence every this many steps.
        seed: seed of the private generator of the starting vector.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2], [0.0, -0.3]], dtype=torch.float64)  # μ = 0.5, −0.3
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> est = gs.spectral.spectral_norm(problem, gs.spectral.Lanczos(max_steps=2))
        >>> round(est.value, 6), round(float(torch.linalg.matrix_norm(W, 2)), 6)
        (0.553732, 0.553732)

    """

    max_steps: int = 100
    rtol: float = 1e-8
    check_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("Lanczos", "max_steps", self.max_steps)
        check_positive("Lanczos", "rtol", self.rtol)
        check_steps("Lanczos", "check_every", self.check_every)
        check_seed("Lanczos", self.seed)


@dataclass(frozen=True)
class PowerIteration:
    """Power iteration with a Rayleigh quotient, as TorchDEQ's ``power_method`` does.

    ``v ← Jᵀv / ‖Jᵀv‖`` for ``steps`` steps; the estimate is ``|vᵀJᵀv|``. It converges
    to ρ(J) only when one real eigenvalue dominates in modulus; for a complex leading
    pair it oscillates. Kept for comparison with the peers.

    Args:
        steps: number of products per sample (TorchDEQ uses 100 in training logs).
        seed: seed of the private generator of the starting vector.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2], [0.0, -0.3]], dtype=torch.float64)  # μ = 0.5, −0.3
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> est = gs.spectral_radius(problem, gs.spectral.PowerIteration(steps=80))
        >>> round(est.value, 6), est.matvecs
        (0.5, 80)

    """

    steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("PowerIteration", "steps", self.steps)
        check_seed("PowerIteration", self.seed)


@dataclass(frozen=True)
class ScipyEigs:
    """``scipy.sparse.linalg.eigs`` (ARPACK) on the operator: a reference on the CPU.

    Args:
        eigenvalues: how many eigenvalues of largest modulus to ask for.
        tol: ARPACK's relative tolerance (0: machine precision).
        seed: seed of the starting vector.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2, 0.0], [0.0, -0.3, 0.1], [0.0, 0.0, 0.1]], dtype=torch.float64)
        >>> h = torch.zeros(3, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> est = gs.spectral_radius(problem, gs.spectral.ScipyEigs(eigenvalues=1))
        >>> round(est.value, 6), est.converged
        (0.5, True)

    """

    eigenvalues: int = 6
    tol: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("ScipyEigs", "eigenvalues", self.eigenvalues)
        check_positive("ScipyEigs", "tol", self.tol, allow_zero=True)


@dataclass(frozen=True)
class DenseSpectrum:
    """Materialise the matrix (per-sample blocks) and use ``torch.linalg`` (small n).

    The reference path: ``eigvals`` for a spectral radius, ``svdvals`` for norms and
    singular values, on :meth:`LinearOperator.dense <gradscope.operators.LinearOperator.dense>`.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2], [0.0, -0.3]], dtype=torch.float64)  # μ = 0.5, −0.3
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> rho = gs.spectral_radius(problem, gs.spectral.DenseSpectrum())
        >>> smin = gs.spectral.smallest_singular_value(problem, gs.spectral.DenseSpectrum())
        >>> round(rho.value, 6), round(smin.value, 6), rho.residual.tolist()
        (0.5, 0.493228, [0.0])

    """


RadiusMethod = Arnoldi | PowerIteration | ScipyEigs | DenseSpectrum
NormMethod = Lanczos | DenseSpectrum


# ---------------------------------------------------------------------- result
@dataclass(frozen=True)
class SpectralEstimate:
    """A spectral quantity of J or of another operator, overall and per sample.

    Attributes:
        quantity: what was estimated (``"ρ(J)"``, ``"‖J‖₂"``, ``"σ_min(I − J)"``, or
            ``"ρ(A)"`` with A the name of an operator passed in, ...).
        method: the method object used.
        value: the estimate for the whole (block-diagonal) operator: the maximum over
            samples (the minimum for a smallest singular value).
        per_sample: the estimate per sample, shape ``(samples,)`` (one entry when the
            samples are coupled or h* is not batched).
        residual: accuracy indicator per sample: the Ritz residual (Arnoldi, power
            iteration, ARPACK) or the bound on ``|σ − σ̃|`` from the Lanczos residual;
            0 for the dense path.
        matvecs: products with the map or its transpose (J, Jᵀ, or the operator's
            own products) per sample (a batched product counts once).
        converged: whether every sample met the method's tolerance.
        steps: iterations run.
        eigenvalues: for a spectral radius: the leading Ritz values per sample, complex,
            ``(samples, r)``, sorted by decreasing modulus (NaN where a sample has fewer).
        ritz_values: for a spectral radius: every Ritz value of the final Krylov space (the outer
            spectrum, used by the damping bounds), NaN-padded.
        seconds: wall time.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2], [0.0, -0.3]], dtype=torch.float64)  # μ = 0.5, −0.3
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, h)
        >>> est = gs.spectral_radius(problem, gs.spectral.DenseSpectrum())
        >>> est.quantity, round(float(est), 6), est.per_sample.tolist(), est.converged
        ('ρ(J)', 0.5, [0.5], True)

    """

    quantity: str
    method: object
    value: float
    per_sample: torch.Tensor
    residual: torch.Tensor
    matvecs: int
    converged: bool
    steps: int
    eigenvalues: torch.Tensor | None = field(default=None, repr=False)
    ritz_values: torch.Tensor | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def max_residual(self) -> float:
        """The largest per-sample accuracy indicator."""
        return float(self.residual.max())

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return (
            f"SpectralEstimate({self.quantity} = {self.value:.6g}, method="
            f"{type(self.method).__name__}, samples={self.per_sample.numel()}, "
            f"residual={self.max_residual:.2e}, matvecs={self.matvecs}, "
            f"converged={self.converged})"
        )


# ---------------------------------------------------------------------- checks
def check_method(call: str, method: object, allowed: tuple[type, ...]) -> None:
    """Raise a TypeError naming ``call`` unless ``method`` is one of ``allowed``."""
    if not isinstance(method, allowed):
        names = ", ".join(f"gradscope.spectral.{t.__name__}()" for t in allowed)
        fail(call, f"method={method!r}; expected one of {names}.", TypeError)


def check_operand(call: str, target: object) -> FixedPointProblem | LinearOperator:
    """Raise a TypeError naming ``call`` unless ``target`` is a problem or an operator."""
    if not isinstance(target, (FixedPointProblem, LinearOperator)):
        fail(
            call,
            f"got a {type(target).__name__}; expected a gradscope.FixedPointProblem (for its "
            "J = ∂F/∂h) or a gradscope.operators.LinearOperator.",
            TypeError,
        )
    return target
