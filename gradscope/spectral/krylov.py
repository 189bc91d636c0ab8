r"""Batched Krylov iterations: Arnoldi for eigenvalues, symmetric Lanczos for singular values.

Both work on a block ``(rows, n)`` of vectors: one Krylov basis per row, every product
with the map one batched call. A row is a sample when the samples are independent (the
map is block-diagonal, :meth:`LinearOperator.layout <gradscope.operators.LinearOperator.layout>`),
else the whole state. :func:`flat_map` turns an operator on states into a map on rows.

These functions are the package's numerical core: ``gradscope.spectral.radius``,
``gradscope.spectral.norms`` and the theory checks
(:func:`gradscope.theory.param_singular_values`, :func:`gradscope.theory.check_ascent`)
call them; they are public within gradscope but not part of ``gradscope.spectral.__all__``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .._checks import all_finite
from ..layout import SampleLayout
from ..solvers.krylov import cgs2, gram_schmidt
from .methods import Arnoldi, Lanczos

__all__ = [
    "ArnoldiResult",
    "Flat",
    "LanczosResult",
    "arnoldi",
    "complex_dtype",
    "flat_map",
    "lanczos",
    "sort_by_modulus",
    "sqrt_bound",
    "start_block",
]

Flat = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------- rows
def flat_map(apply: Flat, layout: SampleLayout) -> Flat:
    """A map on states (``apply``) as a map on the ``(rows, n)`` block of ``layout``."""
    return lambda V: layout.flat(apply(layout.unflat(V)))


def start_block(layout: SampleLayout, like: torch.Tensor, seed: int) -> torch.Tensor:
    """Random starting vectors ``(rows, n)`` from a private generator (global RNG untouched)."""
    generator = torch.Generator(device=like.device).manual_seed(seed)
    return torch.randn(
        (layout.rows, layout.n), generator=generator, dtype=like.dtype, device=like.device
    )


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype that holds eigenvalues of a real ``dtype`` matrix."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def nan_safe(
    decompose: Callable[[torch.Tensor], torch.Tensor],
    blocks: torch.Tensor,
    shape: torch.Size,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``decompose(blocks)``, or NaN of ``shape`` (and ``dtype``) when a block is not finite.

    Returns:
        The eigen- or singular values, NaN where they cannot be computed.

    """
    if all_finite(blocks):
        return decompose(blocks)
    return torch.full(shape, math.nan, dtype=dtype or blocks.dtype, device=blocks.device)


def sort_by_modulus(values: torch.Tensor) -> torch.Tensor:
    """Sort along the last dimension by decreasing modulus (NaN last)."""
    order = torch.argsort(values.abs().nan_to_num(-1.0), dim=-1, descending=True)
    return torch.gather(values, -1, order)


def sqrt_bound(theta: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """σ = √θ and the half-width of ``[√(θ − r), √(θ + r)]``: the bound on ``|σ − σ̃|``.

    For a Ritz value θ of ``AᵀA`` with residual r (from :func:`lanczos`).

    Returns:
        ``(σ, half-width)``, each of the shape of ``theta``.

    """
    theta = theta.clamp_min(0)
    sigma = theta.sqrt()
    up = (theta + residual).sqrt() - sigma
    down = sigma - (theta - residual).clamp_min(0).sqrt()
    return sigma, torch.maximum(up, down)


def _first_basis_vector(v0: torch.Tensor, m: int) -> torch.Tensor:
    """The basis ``(S, m + 1, n)`` with the normalised ``v0`` in place 0."""
    V = v0.new_zeros(v0.shape[0], m + 1, v0.shape[1])
    V[:, 0] = v0 / torch.linalg.vector_norm(v0, dim=1, keepdim=True)
    return V


# ---------------------------------------------------------------------- Arnoldi
class ArnoldiResult(NamedTuple):
    """What :func:`arnoldi` returns (a tuple: it unpacks in this order)."""

    ritz: torch.Tensor
    """Ritz values per row, complex, sorted by decreasing modulus, NaN-padded ``(S, m)``."""
    residual: torch.Tensor
    """Residual of the leading Ritz pair per row, ``(S,)``."""
    size: torch.Tensor
    """Krylov dimension per row (smaller after a breakdown), ``(S,)``."""
    steps: int
    """Iterations run."""
    converged: bool
    """Whether every row met ``method.rtol`` (or broke down: exact Ritz values)."""


def arnoldi(apply: Flat, v0: torch.Tensor, method: Arnoldi) -> ArnoldiResult:
    """Batched Arnoldi with full re-orthogonalisation: one Krylov basis per row of ``v0``.

    Args:
        apply: the map on ``(S, n)`` blocks (row s to row s).
        v0: starting vectors ``(S, n)``.
        method: steps, tolerance and convergence-test interval.

    Returns:
        An :class:`ArnoldiResult`.

    """
    S, n = v0.shape
    m = min(method.max_steps, n)
    V = _first_basis_vector(v0, m)
    H = v0.new_zeros(S, m + 1, m)
    size = torch.full((S,), m, device=v0.device)
    broken = torch.zeros(S, dtype=torch.bool, device=v0.device)
    eps, tiny = torch.finfo(v0.dtype).eps, torch.finfo(v0.dtype).tiny
    steps, converged = 0, False
    for j in range(m):
        w = apply(V[:, j])
        basis = V[:, : j + 1]
        w, h = cgs2(basis, w)  # the Krylov core GMRES uses
        beta = torch.linalg.vector_norm(w, dim=1)
        scale = torch.linalg.vector_norm(h, dim=1)
        now_broken = ~broken & (beta <= 100 * eps * scale.clamp_min(tiny))
        size = torch.where(now_broken, torch.full_like(size, j + 1), size)
        broken = broken | now_broken
        beta = torch.where(broken, torch.zeros_like(beta), beta)
        H[:, : j + 1, j] = h  # zero on samples already broken down (their v_j = 0)
        H[:, j + 1, j] = beta
        V[:, j + 1] = torch.where(broken[:, None], 0.0, w / beta.clamp_min(1e-300)[:, None])
        steps = j + 1
        if steps % method.check_every == 0 or steps == m:
            lead_abs, residual = _leading_ritz(H, steps)
            met = bool((residual <= method.rtol * lead_abs).all())
            if steps == m or met:
                converged = met or bool(broken.all())
                break
    ritz, lead_res = _final_ritz(H, size.clamp_max(steps).tolist(), steps)
    if not converged:
        converged = bool((lead_res <= method.rtol * ritz[:, 0].abs()).all())
    return ArnoldiResult(ritz, lead_res, size, steps, converged)


def _leading_ritz(H: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading Ritz value modulus and residual of the padded ``H[:, :steps, :steps]``.

    The small eigenproblems are solved on the CPU (one transfer of H), as
    ``torch.linalg.eig`` on CUDA copies to the host anyway, once per call.

    Returns:
        ``(|θ|, residual)`` of the leading Ritz value, one per block.

    """
    device = H.device
    Hc = H[:, : steps + 1, :steps].cpu()
    if not all_finite(Hc):  # LAPACK aborts or raises on inf/NaN: report NaN instead
        nan = torch.full((H.shape[0],), math.nan, dtype=H.dtype, device=device)
        return nan, nan
    vals, vecs = torch.linalg.eig(Hc[:, :steps, :steps])
    lead = vals.abs().argmax(dim=1)
    idx = torch.arange(Hc.shape[0])
    last = vecs[idx, steps - 1, lead].abs()
    lead_abs, residual = vals[idx, lead].abs(), Hc[:, steps, steps - 1].abs() * last
    return lead_abs.to(device), residual.to(device)


def _final_ritz(H: torch.Tensor, sizes: list, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All Ritz values per row, each on its own (unpadded) block, and the leading residual."""
    S = H.shape[0]
    ritz = torch.full((S, steps), math.nan, dtype=complex_dtype(H.dtype), device=H.device)
    lead_res = H.new_zeros(S)
    H_host = H.cpu()  # S small eigenproblems: on the CPU, not one CUDA round trip each
    for s in range(S):
        k = int(sizes[s])
        Hs = H_host[s, : k + 1, :k]
        if not all_finite(Hs):  # a non-finite product: this row's spectrum is unknown
            lead_res[s] = math.nan
            continue
        vals, vecs = torch.linalg.eig(Hs[:k])
        order = torch.argsort(vals.abs(), descending=True)
        vals, vecs = vals[order], vecs[:, order]
        ritz[s, :k] = vals.to(ritz.device)
        lead_res[s] = (Hs[k, k - 1].abs() * vecs[-1, 0].abs()).to(lead_res.device)
    return ritz, lead_res


# ---------------------------------------------------------------------- Lanczos
class LanczosResult(NamedTuple):
    """What :func:`lanczos` returns (a tuple: it unpacks in this order)."""

    theta: torch.Tensor
    """The wanted extreme Ritz value per row, ``(S,)``."""
    residual: torch.Tensor
    """Its residual ``|β_m y_m|`` per row, ``(S,)``: a bound on its distance to the spectrum."""
    steps: int
    """Iterations run."""
    converged: bool
    """Whether every row met ``method.rtol``."""


def lanczos(apply: Flat, v0: torch.Tensor, method: Lanczos, which: str) -> LanczosResult:
    """Batched symmetric Lanczos (CGS2 re-orthogonalisation) for an extreme eigenvalue.

    For a symmetric positive semi-definite map (``AᵀA``, ``F_θF_θᵀ``, ...). After a
    breakdown (invariant subspace, exact Ritz values) a row's tridiagonal matrix is
    padded with decoupled copies of ``T_00`` (a Rayleigh quotient, inside the spectrum),
    which leave its extreme Ritz values unchanged.

    Args:
        apply: the map on ``(S, n)`` blocks (row s to row s).
        v0: starting vectors ``(S, n)``.
        method: steps, tolerance and convergence-test interval.
        which: ``"max"`` or ``"min"``.

    Returns:
        A :class:`LanczosResult`.

    """
    S, n = v0.shape
    m = min(method.max_steps, n)
    V = _first_basis_vector(v0, m)
    T = v0.new_zeros(S, m, m)
    broken = torch.zeros(S, dtype=torch.bool, device=v0.device)
    eps = torch.finfo(v0.dtype).eps
    steps, converged = 0, False
    theta, residual = v0.new_zeros(S), v0.new_zeros(S)
    pick = -1 if which == "max" else 0
    for j in range(m):
        w = apply(V[:, j])
        alpha = (V[:, j] * w).sum(dim=1)
        basis = V[:, : j + 1]
        for _ in range(2):  # full re-orthogonalisation, twice (CGS2)
            w = gram_schmidt(basis, w, passes=1)[0]
        beta = torch.linalg.vector_norm(w, dim=1)
        now_broken = ~broken & (beta <= 100 * eps * alpha.abs().clamp_min(1e-300))
        alpha = torch.where(broken, T[:, 0, 0], alpha)
        broken = broken | now_broken
        beta = torch.where(broken, torch.zeros_like(beta), beta)
        T[:, j, j] = alpha
        if j + 1 < m:
            T[:, j + 1, j] = T[:, j, j + 1] = beta
        V[:, j + 1] = torch.where(broken[:, None], 0.0, w / beta.clamp_min(1e-300)[:, None])
        steps = j + 1
        if steps % method.check_every == 0 or steps == m:
            if not all_finite(T[:, :steps, :steps]):  # a non-finite product: give up
                nan = torch.full_like(theta, math.nan)
                return LanczosResult(nan, nan, steps, False)
            vals, vecs = torch.linalg.eigh(T[:, :steps, :steps])
            theta = vals[:, pick]
            residual = beta.abs() * vecs[:, steps - 1, pick].abs()
            converged = bool((residual <= method.rtol * theta.abs()).all())
            if converged:
                break
    return LanczosResult(theta, residual, steps, converged)
