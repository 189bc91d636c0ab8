r"""Spectral estimates of the Jacobian at the equilibrium: ρ(J), ‖J‖₂, σ_min(I − J), ‖B_λ^k‖₂.

These numbers decide which gradient estimator can work (:ref:`theory-exact-gradient`, :ref:`theory-damping`):

* ``ρ(J) < 1`` makes fixed-point iteration and the undamped Neumann series converge;
  the eigenvalues μ of J give the admissible damping (:func:`gradscope.theory.damping_limit`);
* ``‖J‖₂`` bounds ``‖B_λ^k‖₂ ≤ (1 − λ(1 − ‖J‖₂))^k``;
* ``σ_min(I − J)`` is the distance of the adjoint system to singularity (``1/σ_min`` is
  the amplification of errors in ``(I − Jᵀ)u = g``);
* ``‖B_λ^k‖₂`` with ``B_λ = (1 − λ)I + λJ`` is the exact worst-case relative error of the
  Neumann adjoint, since ``u* − u_k = (B_λᵀ)^k u*`` [derived, :ref:`theory-neumann-error`].

Everything is matrix-free (JVPs ``Jv`` and VJPs ``Jᵀv`` through the cached graph of F)
and batched: when the samples of h* are independent (J block-diagonal), each sample gets
its own Krylov basis while every product is one batched VJP or JVP, and the estimate is
reported per sample and overall (the maximum over samples, which is the value for the
block-diagonal J). Methods are strategy objects:

==========================  ===========================================  ==========================
method                      what                                         products per sample
==========================  ===========================================  ==========================
:class:`Arnoldi`            Krylov (Arnoldi, full re-orthogonalisation)  ≤ ``max_steps`` VJPs
:class:`Lanczos`            symmetric Lanczos on ``AᵀA`` (norms)         ≤ 2 ``max_steps`` per power
:class:`PowerIteration`     power iteration + Rayleigh quotient          ``steps`` VJPs
                            (the peers' method, TorchDEQ's
                            ``power_method``)
:class:`ScipyEigs`          ``scipy.sparse.linalg.eigs`` (ARPACK)        as ARPACK needs (reference)
:class:`DenseSpectrum`      materialise J, ``torch.linalg.eigvals`` /    n (reference, small n)
                            ``svdvals``
==========================  ===========================================  ==========================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_damping, check_positive, check_steps, fail
from .operators import Counted, LinearOperator, damped, jacobian_transpose
from .problem import FixedPointProblem, check_problem

__all__ = [
    "Arnoldi",
    "DenseSpectrum",
    "Lanczos",
    "PowerIteration",
    "ScipyEigs",
    "SpectralEstimate",
    "damped_power_norm",
    "smallest_singular_value",
    "spectral_norm",
    "spectral_radius",
]

Flat = Callable[[torch.Tensor], torch.Tensor]


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

    """

    max_steps: int = 100
    rtol: float = 1e-8
    check_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("Lanczos", "max_steps", self.max_steps)
        check_positive("Lanczos", "rtol", self.rtol)
        check_steps("Lanczos", "check_every", self.check_every)


@dataclass(frozen=True)
class PowerIteration:
    """Power iteration with a Rayleigh quotient, as TorchDEQ's ``power_method`` does.

    ``v ← Jᵀv / ‖Jᵀv‖`` for ``steps`` steps; the estimate is ``|vᵀJᵀv|``. It converges
    to ρ(J) only when one real eigenvalue dominates in modulus; for a complex leading
    pair it oscillates. Kept for comparison with the peers.

    Args:
        steps: number of products per sample (TorchDEQ uses 100 in training logs).
        seed: seed of the private generator of the starting vector.

    """

    steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("PowerIteration", "steps", self.steps)


@dataclass(frozen=True)
class ScipyEigs:
    """``scipy.sparse.linalg.eigs`` (ARPACK) on the operator: a reference on the CPU.

    Args:
        eigenvalues: how many eigenvalues of largest modulus to ask for.
        tol: ARPACK's relative tolerance (0: machine precision).
        seed: seed of the starting vector.

    """

    eigenvalues: int = 6
    tol: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_steps("ScipyEigs", "eigenvalues", self.eigenvalues)
        check_positive("ScipyEigs", "tol", self.tol, allow_zero=True)


@dataclass(frozen=True)
class DenseSpectrum:
    """Materialise the matrix (per-sample blocks) and use ``torch.linalg`` (small n)."""


RadiusMethod = Arnoldi | PowerIteration | ScipyEigs | DenseSpectrum
NormMethod = Lanczos | DenseSpectrum


# ---------------------------------------------------------------------- result
@dataclass(frozen=True)
class SpectralEstimate:
    """A spectral quantity of J (or of a map built from J), overall and per sample.

    Attributes:
        quantity: what was estimated (``"ρ(J)"``, ``"‖J‖₂"``, ``"σ_min(I − J)"``, ...).
        method: the method object used.
        value: the estimate for the whole (block-diagonal) operator: the maximum over
            samples (the minimum for a smallest singular value).
        per_sample: the estimate per sample, shape ``(samples,)`` (one entry when the
            samples are coupled or h* is not batched).
        residual: accuracy indicator per sample: the Ritz residual (Arnoldi, power
            iteration, ARPACK) or the bound on ``|σ − σ̃|`` from the Lanczos residual;
            0 for the dense path.
        matvecs: products with J or Jᵀ per sample (a batched product counts once).
        converged: whether every sample met the method's tolerance.
        steps: iterations run.
        eigenvalues: for ρ(J): the leading Ritz values per sample, complex,
            ``(samples, r)``, sorted by decreasing modulus (NaN where a sample has fewer).
        ritz_values: for ρ(J): every Ritz value of the final Krylov space (the outer
            spectrum, used by the damping bounds), NaN-padded.
        seconds: wall time.

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


# ---------------------------------------------------------------------- plumbing
class _JacobianProducts:
    """``Jᵀ`` and ``J`` at h*, counted, with the maps the spectral quantities need."""

    def __init__(self, problem: FixedPointProblem) -> None:
        self.JT: Counted = Counted(jacobian_transpose(problem))
        self.J: LinearOperator = self.JT.T

    @property
    def vjps(self) -> int:
        """VJPs taken so far."""
        return self.JT.count

    @property
    def jvps(self) -> int:
        """JVPs taken so far."""
        return self.J.count  # type: ignore[attr-defined]

    @property
    def identity_minus_J(self) -> LinearOperator:
        """``I − J``."""
        return self.J.identity() - self.J

    @property
    def adjoint(self) -> LinearOperator:
        """``I − Jᵀ``."""
        return self.JT.identity() - self.JT

    def damped(self, lam: float) -> LinearOperator:
        """``B_λ``."""
        return damped(self.J, lam)

    def damped_T(self, lam: float) -> LinearOperator:
        """``B_λᵀ``."""
        return damped(self.JT, lam)


class _Layout:
    """Flat ``(samples, n)`` views of state-shaped vectors (one row if samples couple)."""

    def __init__(self, problem: FixedPointProblem) -> None:
        h = problem.h_star
        self.shape = h.shape
        self.per_sample = problem.batched and problem.samples_independent
        self.samples = h.shape[0] if self.per_sample else 1
        self.n = h.numel() // self.samples
        self.dtype, self.device = h.dtype, h.device

    def wrap(self, fn: Flat) -> Flat:
        """Turn a map on state-shaped tensors into one on ``(samples, n)``."""
        return lambda V: fn(V.reshape(self.shape)).reshape(self.samples, self.n)

    def start(self, seed: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randn(
            (self.samples, self.n), generator=generator, dtype=self.dtype, device=self.device
        )


def _check_method(call: str, method: object, allowed: tuple[type, ...]) -> None:
    if not isinstance(method, allowed):
        names = ", ".join(f"gradscope.{t.__name__}()" for t in allowed)
        fail(call, f"method={method!r}; expected one of {names}.", TypeError)


def _dense_blocks(op, layout: _Layout) -> torch.Tensor:
    """Per-sample blocks ``(samples, n, n)`` of a map (one block if samples couple)."""
    M = op.dense(per_sample=layout.per_sample)
    return M if layout.per_sample else M[None]


def _sort_by_modulus(values: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(values.abs().nan_to_num(-1.0), dim=-1, descending=True)
    return torch.gather(values, -1, order)


# ---------------------------------------------------------------------- Arnoldi
def _arnoldi(
    apply: Flat, v0: torch.Tensor, method: Arnoldi
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, bool]:
    """Batched Arnoldi: one Krylov basis per row of ``v0``.

    Returns (Ritz values NaN-padded ``(S, m)``, leading residual ``(S,)``, Krylov size
    per sample ``(S,)``, steps, converged).
    """
    S, n = v0.shape
    m = min(method.max_steps, n)
    V = v0.new_zeros(S, m + 1, n)
    H = v0.new_zeros(S, m + 1, m)
    V[:, 0] = v0 / torch.linalg.vector_norm(v0, dim=1, keepdim=True)
    size = torch.full((S,), m, device=v0.device)
    broken = torch.zeros(S, dtype=torch.bool, device=v0.device)
    eps = torch.finfo(v0.dtype).eps
    steps, converged = 0, False
    for j in range(m):
        w = apply(V[:, j])
        basis = V[:, : j + 1]
        h = _coeffs(basis, w)
        w = w - _combine(basis, h)
        h2 = _coeffs(basis, w)  # second Gram–Schmidt pass
        w = w - _combine(basis, h2)
        h = h + h2
        beta = torch.linalg.vector_norm(w, dim=1)
        scale = torch.linalg.vector_norm(h, dim=1)
        now_broken = ~broken & (beta <= 100 * eps * scale.clamp_min(torch.finfo(v0.dtype).tiny))
        size = torch.where(now_broken, torch.full_like(size, j + 1), size)
        broken = broken | now_broken
        beta = torch.where(broken, torch.zeros_like(beta), beta)
        H[:, : j + 1, j] = h  # zero on samples already broken down (their v_j = 0)
        H[:, j + 1, j] = beta
        V[:, j + 1] = torch.where(broken[:, None], 0.0, w / beta.clamp_min(1e-300)[:, None])
        steps = j + 1
        if steps % method.check_every == 0 or steps == m:
            _, residual = _ritz(H, steps)
            if steps == m or bool((residual[1] <= method.rtol * residual[0]).all()):
                converged = bool((residual[1] <= method.rtol * residual[0]).all()) or bool(
                    broken.all()
                )
                break
    # final Ritz values, each sample on its own (unpadded) block
    ritz = torch.full((S, steps), math.nan, dtype=_complex(v0.dtype), device=v0.device)
    lead_res = v0.new_zeros(S)
    sizes = size.clamp_max(steps).tolist()
    H_host = H.cpu()  # S small eigenproblems: on the CPU, not one CUDA round trip each
    for s in range(S):
        k = int(sizes[s])
        Hs = H_host[s, : k + 1, :k]
        vals, vecs = torch.linalg.eig(Hs[:k])
        order = torch.argsort(vals.abs(), descending=True)
        vals, vecs = vals[order], vecs[:, order]
        ritz[s, :k] = vals.to(ritz.device)
        lead_res[s] = (Hs[k, k - 1].abs() * vecs[-1, 0].abs()).to(lead_res.device)
    if not converged:
        converged = bool((lead_res <= method.rtol * ritz[:, 0].abs()).all())
    return ritz, lead_res, size, steps, converged


# Small bases: elementwise products (tiny batched GEMMs stall on busy multi-threaded CPUs).
# Large bases or CUDA: bmm, which reads the basis in place; the elementwise form would
# materialise an (S, j, n) temporary — 6 GB per product on the 11M-parameter conv DEQ of
# analysis/gpu_scale.py, where it made ρ(J) cost 30 exact backwards.
_ELEMENTWISE_LIMIT = 2**20


def _use_bmm(basis: torch.Tensor) -> bool:
    return basis.is_cuda or basis.numel() > _ELEMENTWISE_LIMIT


def _coeffs(basis: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Vᵀw`` per sample: basis ``(S, j, n)``, w ``(S, n)`` → ``(S, j)``."""
    if _use_bmm(basis):
        return torch.bmm(basis, w.unsqueeze(-1)).squeeze(-1)
    return (basis * w.unsqueeze(1)).sum(dim=-1)


def _combine(basis: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``V c`` per sample: ``(S, j, n)``, ``(S, j)`` → ``(S, n)``."""
    if _use_bmm(basis):
        return torch.bmm(c.unsqueeze(1), basis).squeeze(1)
    return (c.unsqueeze(-1) * basis).sum(dim=1)


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _ritz(H: torch.Tensor, steps: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Leading Ritz value modulus and residual of the padded ``H[:, :steps, :steps]``.

    The small eigenproblems are solved on the CPU (one transfer of H), as
    ``torch.linalg.eig`` on CUDA copies to the host anyway, once per call.
    """
    device = H.device
    Hc = H[:, : steps + 1, :steps].cpu()
    vals, vecs = torch.linalg.eig(Hc[:, :steps, :steps])
    lead = vals.abs().argmax(dim=1)
    idx = torch.arange(Hc.shape[0])
    last = vecs[idx, steps - 1, lead].abs()
    lead_abs, residual = vals[idx, lead].abs(), Hc[:, steps, steps - 1].abs() * last
    return vals.to(device), (lead_abs.to(device), residual.to(device))


# ---------------------------------------------------------------------- Lanczos
def _lanczos(
    apply: Flat, v0: torch.Tensor, method: Lanczos, which: str
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Batched symmetric Lanczos for the extreme eigenvalue of a symmetric PSD map.

    ``which`` is ``"max"`` or ``"min"``. After a breakdown (invariant subspace, exact
    Ritz values) a sample's tridiagonal matrix is padded with decoupled copies of
    ``T_00`` (a Rayleigh quotient, inside the spectrum), which leave its extreme Ritz
    values unchanged.

    Returns (Ritz value ``(S,)``, its residual ``|β_m y_m|`` ``(S,)``, steps, converged).
    """
    S, n = v0.shape
    m = min(method.max_steps, n)
    V = v0.new_zeros(S, m + 1, n)
    T = v0.new_zeros(S, m, m)
    beta_next = v0.new_zeros(S, m)
    V[:, 0] = v0 / torch.linalg.vector_norm(v0, dim=1, keepdim=True)
    broken = torch.zeros(S, dtype=torch.bool, device=v0.device)
    eps = torch.finfo(v0.dtype).eps
    steps, converged = 0, False
    theta, residual = v0.new_zeros(S), v0.new_zeros(S)
    for j in range(m):
        w = apply(V[:, j])
        alpha = (V[:, j] * w).sum(dim=1)
        basis = V[:, : j + 1]
        for _ in range(2):  # full re-orthogonalisation, twice (CGS2)
            w = w - _combine(basis, _coeffs(basis, w))
        beta = torch.linalg.vector_norm(w, dim=1)
        now_broken = ~broken & (beta <= 100 * eps * alpha.abs().clamp_min(1e-300))
        alpha = torch.where(broken, T[:, 0, 0], alpha)
        broken = broken | now_broken
        beta = torch.where(broken, torch.zeros_like(beta), beta)
        T[:, j, j] = alpha
        if j + 1 < m:
            T[:, j + 1, j] = T[:, j, j + 1] = beta
        beta_next[:, j] = beta
        V[:, j + 1] = torch.where(broken[:, None], 0.0, w / beta.clamp_min(1e-300)[:, None])
        steps = j + 1
        if steps % method.check_every == 0 or steps == m:
            vals, vecs = torch.linalg.eigh(T[:, :steps, :steps])
            pick = -1 if which == "max" else 0
            theta = vals[:, pick]
            residual = beta.abs() * vecs[:, steps - 1, pick].abs()
            converged = bool((residual <= method.rtol * theta.abs()).all())
            if converged:
                break
    return theta, residual, steps, converged


def _sqrt_bound(theta: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """σ = √θ and the half-width of ``[√(θ − r), √(θ + r)]``: the bound on ``|σ − σ̃|``."""
    theta = theta.clamp_min(0)
    sigma = theta.sqrt()
    up = (theta + residual).sqrt() - sigma
    down = sigma - (theta - residual).clamp_min(0).sqrt()
    return sigma, torch.maximum(up, down)


# ---------------------------------------------------------------------- public API
def spectral_radius(
    problem: FixedPointProblem, method: RadiusMethod | None = None
) -> SpectralEstimate:
    r"""Spectral radius ``ρ(J) = max |μ|`` over the eigenvalues μ of ``J = ∂F/∂h`` at h*.

    Computed on ``Jᵀ`` (same eigenvalues; each product is one VJP through the cached
    graph of F). When the samples are independent, each gets its own Krylov basis and
    ``per_sample`` holds ρ of its block; ``value`` is the maximum.

    Args:
        problem: the equilibrium.
        method: :class:`Arnoldi` (default), :class:`PowerIteration` (the peers' method),
            :class:`ScipyEigs` or :class:`DenseSpectrum` (references).

    Returns:
        A :class:`SpectralEstimate` with ``eigenvalues`` (leading Ritz values, complex)
        and ``ritz_values`` (all of them, for :func:`gradscope.theory.damping_limit`).

    Raises:
        TypeError: ``problem`` or ``method`` of the wrong type.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.0, -0.8], [0.8, 0.0]], dtype=torch.float64)  # μ = ±0.8i
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> round(gs.spectral_radius(problem).value, 12)
        0.8

    """
    call = "spectral_radius"
    problem = check_problem(call, problem)
    method = Arnoldi() if method is None else method
    _check_method(call, method, (Arnoldi, PowerIteration, ScipyEigs, DenseSpectrum))
    layout = _Layout(problem)
    ops = _JacobianProducts(problem)
    start = time.perf_counter()
    if isinstance(method, DenseSpectrum):
        vals = _sort_by_modulus(torch.linalg.eigvals(_dense_blocks(ops.JT, layout)))
        return _radius_result(
            method, vals, vals, vals.real.new_zeros(vals.shape[0]), layout.n, True, 1, start
        )
    if isinstance(method, PowerIteration):
        return _power_radius(ops, layout, method, start)
    if isinstance(method, ScipyEigs):
        return _scipy_radius(ops, layout, method, start)
    ritz, residual, _, steps, converged = _arnoldi(
        layout.wrap(ops.JT), layout.start(method.seed), method
    )
    k = min(method.eigenvalues, ritz.shape[1])
    return _radius_result(method, ritz[:, :k], ritz, residual, ops.vjps, converged, steps, start)


def _radius_result(method, leading, ritz, residual, matvecs, converged, steps, start):
    per_sample = leading[:, 0].abs()
    return SpectralEstimate(
        "ρ(J)",
        method,
        float(per_sample.max()),
        per_sample,
        residual,
        int(matvecs),
        bool(converged),
        int(steps),
        leading,
        ritz,
        time.perf_counter() - start,
    )


def _power_radius(ops: _JacobianProducts, layout: _Layout, method: PowerIteration, start: float):
    # TorchDEQ's power_method: v ← Jᵀv/‖Jᵀv‖, estimate |vᵀJᵀv| / vᵀv per sample.
    apply = layout.wrap(ops.JT)
    v = layout.start(method.seed)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    rayleigh = v.new_zeros(layout.samples)
    w = v
    for _ in range(method.steps):
        w = apply(v)
        rayleigh = (w * v).sum(dim=1)
        norm = torch.linalg.vector_norm(w, dim=1, keepdim=True)
        v_next = w / norm.clamp_min(1e-300)
        if _ == method.steps - 1:
            break
        v = v_next
    residual = torch.linalg.vector_norm(w - rayleigh[:, None] * v, dim=1)
    vals = rayleigh.to(_complex(rayleigh.dtype))[:, None]
    return SpectralEstimate(
        "ρ(J)",
        method,
        float(rayleigh.abs().max()),
        rayleigh.abs(),
        residual,
        ops.vjps,
        bool((residual <= 1e-6 * rayleigh.abs()).all()),
        method.steps,
        vals,
        vals,
        time.perf_counter() - start,
    )


def _scipy_radius(ops: _JacobianProducts, layout: _Layout, method: ScipyEigs, start: float):
    from scipy.sparse.linalg import LinearOperator, eigs

    apply = layout.wrap(ops.JT)
    S, n = layout.samples, layout.n
    k = min(method.eigenvalues, n - 2)
    counts = []
    rows, residuals = [], []
    rng = np.random.default_rng(method.seed)
    for s in range(S):
        before = ops.vjps

        def one(x: np.ndarray, s: int = s, imag: bool = False) -> np.ndarray:
            V = torch.zeros((S, n), dtype=layout.dtype, device=layout.device)
            V[s] = torch.as_tensor(np.ascontiguousarray(x), dtype=layout.dtype)
            return apply(V)[s].detach().cpu().double().numpy()

        if k < 1:  # ARPACK needs k < n − 1: tiny blocks go dense
            M = np.stack([one(e) for e in np.eye(n)], axis=1)
            vals, vecs = np.linalg.eig(M)
        else:
            op = LinearOperator((n, n), matvec=one, dtype=np.float64)
            vals, vecs = eigs(op, k=k, which="LM", tol=method.tol, v0=rng.standard_normal(n))
        order = np.argsort(-np.abs(vals))
        vals, vecs = vals[order], vecs[:, order]
        x = vecs[:, 0]
        Ax = one(x.real) + 1j * one(x.imag)
        residuals.append(np.linalg.norm(Ax - vals[0] * x) / np.linalg.norm(x))
        counts.append(ops.vjps - before)
        rows.append(vals[: method.eigenvalues])
    width = max(len(r) for r in rows)
    out = np.full((S, width), np.nan + 0j)
    for s, r in enumerate(rows):
        out[s, : len(r)] = r
    vals_t = torch.as_tensor(out, device=layout.device).to(_complex(layout.dtype))
    residual = torch.as_tensor(residuals, dtype=layout.dtype, device=layout.device)
    return _radius_result(method, vals_t, vals_t, residual, max(counts), True, max(counts), start)


def _singular(
    call: str,
    quantity: str,
    problem: FixedPointProblem,
    method: NormMethod | None,
    forward: Callable[[_JacobianProducts], Callable],
    backward: Callable[[_JacobianProducts], Callable],
    dense: Callable[[torch.Tensor], torch.Tensor],
    which: str,
) -> SpectralEstimate:
    problem = check_problem(call, problem)
    method = Lanczos() if method is None else method
    _check_method(call, method, (Lanczos, DenseSpectrum))
    layout = _Layout(problem)
    ops = _JacobianProducts(problem)
    start = time.perf_counter()
    if isinstance(method, DenseSpectrum):
        A = dense(_dense_blocks(ops.J, layout))
        s = torch.linalg.svdvals(A)
        per_sample = s[:, 0] if which == "max" else s[:, -1]
        residual = torch.zeros_like(per_sample)
        steps, converged = 1, True
    else:
        A, AT = forward(ops), backward(ops)
        theta, res, steps, converged = _lanczos(
            layout.wrap(lambda v: AT(A(v))), layout.start(method.seed), method, which
        )
        per_sample, residual = _sqrt_bound(theta, res)
    value = per_sample.max() if which == "max" else per_sample.min()
    return SpectralEstimate(
        quantity,
        method,
        float(value),
        per_sample,
        residual,
        ops.vjps + ops.jvps,
        converged,
        steps,
        seconds=time.perf_counter() - start,
    )


def spectral_norm(problem: FixedPointProblem, method: NormMethod | None = None) -> SpectralEstimate:
    r"""Spectral norm ``‖J‖₂ = σ_max(J)``: Lanczos on ``JᵀJ`` (one JVP + one VJP per step).

    ``‖J‖₂ ≥ ρ(J)``, with equality for normal J. ``‖J‖₂ < 1`` makes F a contraction
    near h* and gives ``‖B_λ^k‖₂ ≤ (1 − λ(1 − ‖J‖₂))^k`` [derived, :ref:`theory-steps`].

    Args:
        problem: the equilibrium.
        method: :class:`Lanczos` (default) or :class:`DenseSpectrum`.

    Returns:
        A :class:`SpectralEstimate`; ``residual`` bounds ``|σ − σ̃|`` by the Ritz residual.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 1.0], [0.0, 0.5]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> est = gs.spectral.spectral_norm(problem)
        >>> abs(est.value - float(torch.linalg.matrix_norm(W, 2))) < 1e-10
        True

    """
    return _singular(
        "spectral_norm",
        "‖J‖₂",
        problem,
        method,
        lambda ops: ops.J,
        lambda ops: ops.JT,
        lambda J: J,
        "max",
    )


def smallest_singular_value(
    problem: FixedPointProblem, method: NormMethod | None = None
) -> SpectralEstimate:
    r"""``σ_min(I − J)``: how far the adjoint system ``(I − Jᵀ)u = g`` is from singular.

    Errors in the adjoint right-hand side are amplified by up to ``1/σ_min(I − J)``; the
    implicit gradient does not exist when it is 0. Lanczos on ``(I − J)ᵀ(I − J)``
    (smallest Ritz value; one JVP + one VJP per step).

    Args:
        problem: the equilibrium.
        method: :class:`Lanczos` (default ``Lanczos(max_steps=300)``) or
            :class:`DenseSpectrum`. Check ``converged``: on tanh cells with d = 1024,
            100 steps left it about 2% high.

    Returns:
        A :class:`SpectralEstimate` whose ``value`` is the minimum over samples.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.diag(torch.tensor([0.9, -0.5], dtype=torch.float64))
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> round(gs.spectral.smallest_singular_value(problem).value, 10)
        0.1

    """

    def dense(J: torch.Tensor) -> torch.Tensor:
        return torch.eye(J.shape[-1], dtype=J.dtype, device=J.device) - J

    # the smallest Ritz value converges more slowly than the largest: a longer default run
    method = Lanczos(max_steps=300) if method is None else method
    return _singular(
        "smallest_singular_value",
        "σ_min(I − J)",
        problem,
        method,
        lambda ops: ops.identity_minus_J,
        lambda ops: ops.adjoint,
        dense,
        "min",
    )


def damped_power_norm(
    problem: FixedPointProblem, damping: float, steps: int, method: NormMethod | None = None
) -> SpectralEstimate:
    r"""``‖B_λ^k‖₂`` with ``B_λ = (1 − λ)I + λJ``: the Neumann adjoint's worst-case error.

    The k-step Neumann (NPG) adjoint satisfies ``u* − u_k = (B_λᵀ)^k u*``, so
    ``‖u* − u_k‖ ≤ ‖B_λ^k‖₂ ‖u*‖`` with equality for some g [derived, :ref:`theory-neumann-error`].
    For non-normal J this can exceed 1 for small k even when ``ρ(B_λ) < 1``.
    Lanczos on ``(B^k)ᵀB^k``: 2k products per step.

    Args:
        problem: the equilibrium.
        damping: λ in (0, 1].
        steps: k ≥ 1.
        method: :class:`Lanczos` (default) or :class:`DenseSpectrum`.

    Raises:
        ValueError: damping outside (0, 1] or steps < 1.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.diag(torch.tensor([0.6, -0.2], dtype=torch.float64))
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> round(gs.spectral.damped_power_norm(problem, 0.5, 2).value, 10)  # (1 − 0.5·0.4)²
        0.64

    """
    call = "damped_power_norm"
    check_damping(call, damping)
    check_steps(call, "steps", steps)
    lam, k = float(damping), steps

    def kth_power(step: Callable) -> Callable:
        def power(v: torch.Tensor) -> torch.Tensor:
            for _ in range(k):
                v = step(v)
            return v

        return power

    def forward(ops: _JacobianProducts) -> Callable:
        return kth_power(ops.damped(lam))

    def backward(ops: _JacobianProducts) -> Callable:
        return kth_power(ops.damped_T(lam))

    def dense(J: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
        return torch.linalg.matrix_power((1 - lam) * eye + lam * J, k)

    est = _singular(call, f"‖B_{lam:g}^{k}‖₂", problem, method, forward, backward, dense, "max")
    return est
