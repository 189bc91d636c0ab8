r"""The spectral radius ``ρ(A) = max |μ|`` of J at the equilibrium, or of any operator.

``ρ(J) < 1`` makes fixed-point iteration and the undamped Neumann series converge
(:ref:`theory-exact-gradient`); ``ρ(B_λ)`` of the damped map decides the damped series
(:ref:`theory-damping`). :func:`~gradscope.spectral_radius` takes a problem (its J, through VJPs
with Jᵀ, which has the same eigenvalues) or a
:class:`~gradscope.operators.LinearOperator` (only its products ``v ↦ Av`` are used).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .._checks import all_finite
from ..layout import SampleLayout
from ..operators import Counted, LinearOperator, jacobian_transpose
from ..problem import FixedPointProblem
from .krylov import (
    arnoldi,
    complex_dtype,
    flat_map,
    nan_safe,
    sort_by_modulus,
    start_block,
)
from .methods import (
    Arnoldi,
    DenseSpectrum,
    PowerIteration,
    RadiusMethod,
    ScipyEigs,
    SpectralEstimate,
    check_method,
    check_operand,
)

__all__ = ["spectral_radius"]


def spectral_radius(
    target: FixedPointProblem | LinearOperator, method: RadiusMethod | None = None
) -> SpectralEstimate:
    r"""Spectral radius ``ρ = max |μ|`` over the eigenvalues μ of J at h*, or of an operator.

    For a problem, ``ρ(J)`` with ``J = ∂F/∂h``, computed on ``Jᵀ`` (same eigenvalues;
    each product is one VJP through the cached graph of F). For a
    :class:`~gradscope.operators.LinearOperator` A, ``ρ(A)`` from its products alone:
    ``spectral_radius(damped(jacobian_transpose(problem), λ))`` is ``ρ(B_λ)``. When the
    samples are independent (:attr:`~gradscope.operators.LinearOperator.independent_samples`),
    each gets its own Krylov basis and ``per_sample`` holds ρ of its block; ``value`` is
    the maximum.

    Args:
        target: the equilibrium (a :class:`~gradscope.FixedPointProblem`) or an operator.
        method: :class:`~gradscope.spectral.Arnoldi` (default),
            :class:`~gradscope.spectral.PowerIteration` (the peers' method),
            :class:`~gradscope.spectral.ScipyEigs` or
            :class:`~gradscope.spectral.DenseSpectrum` (references).

    Returns:
        A :class:`~gradscope.spectral.SpectralEstimate` with ``eigenvalues`` (leading Ritz values, complex)
        and ``ritz_values`` (all of them, for :func:`gradscope.theory.damping_limit`).

    Raises:
        TypeError: ``target`` or ``method`` of the wrong type.

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.operators import damped, jacobian_transpose
        >>> W = torch.tensor([[0.0, -0.8], [0.8, 0.0]], dtype=torch.float64)  # μ = ±0.8i
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> round(gs.spectral_radius(problem).value, 12)
        0.8
        >>> B = damped(jacobian_transpose(problem), 0.5)  # μ_B = 0.5 ± 0.4i
        >>> round(gs.spectral_radius(B).value, 12) == round(abs(0.5 + 0.4j), 12)
        True

    """
    call = "spectral_radius"
    target = check_operand(call, target)
    method = Arnoldi() if method is None else method
    check_method(call, method, (Arnoldi, PowerIteration, ScipyEigs, DenseSpectrum))
    if isinstance(target, FixedPointProblem):
        op, quantity = Counted(jacobian_transpose(target)), "ρ(J)"
    else:
        op, quantity = Counted(target), f"ρ({target.name})"
    layout = op.layout()
    start = time.perf_counter()
    if isinstance(method, DenseSpectrum):
        blocks = op.dense(per_sample=layout.by_sample)
        blocks = blocks if layout.by_sample else blocks[None]
        values = nan_safe(
            torch.linalg.eigvals, blocks, blocks.shape[:-1], complex_dtype(blocks.dtype)
        )
        vals = sort_by_modulus(values)
        residual = vals.real.new_zeros(vals.shape[0])
        finite = all_finite(values)
        return _result(quantity, method, vals, vals, residual, layout.n, finite, 1, start)
    if isinstance(method, PowerIteration):
        return _power_radius(quantity, op, layout, method, start)
    if isinstance(method, ScipyEigs):
        return _scipy_radius(quantity, op, layout, method, start)
    ritz, residual, _, steps, converged = arnoldi(
        flat_map(op, layout), start_block(layout, op.like, method.seed), method
    )
    k = min(method.eigenvalues, ritz.shape[1])
    return _result(quantity, method, ritz[:, :k], ritz, residual, op.count, converged, steps, start)


def _result(
    quantity: str,
    method: RadiusMethod,
    leading: torch.Tensor,
    ritz: torch.Tensor,
    residual: torch.Tensor,
    matvecs: int,
    converged: bool,
    steps: int,
    start: float,
) -> SpectralEstimate:
    per_sample = leading[:, 0].abs()
    return SpectralEstimate(
        quantity,
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


def _power_radius(
    quantity: str, op: Counted, layout: SampleLayout, method: PowerIteration, start: float
) -> SpectralEstimate:
    """TorchDEQ's ``power_method``: ``v ← Av/‖Av‖``, estimate ``|vᵀAv|`` per sample."""
    apply = flat_map(op, layout)
    v = start_block(layout, op.like, method.seed)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    rayleigh = v.new_zeros(layout.rows)
    w = v
    for step in range(method.steps):
        w = apply(v)
        rayleigh = (w * v).sum(dim=1)
        if step == method.steps - 1:
            break
        v = w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min(1e-300)
    residual = torch.linalg.vector_norm(w - rayleigh[:, None] * v, dim=1)
    vals = rayleigh.to(complex_dtype(rayleigh.dtype))[:, None]
    converged = bool((residual <= 1e-6 * rayleigh.abs()).all())
    return _result(quantity, method, vals, vals, residual, op.count, converged, method.steps, start)


def _scipy_radius(
    quantity: str, op: Counted, layout: SampleLayout, method: ScipyEigs, start: float
) -> SpectralEstimate:
    """ARPACK (``scipy.sparse.linalg.eigs``) on each sample's block in turn."""
    apply = flat_map(op, layout)
    S, n, like = layout.rows, layout.n, op.like
    rng = np.random.default_rng(method.seed)
    counts, rows, residuals = [], [], []
    for s in range(S):
        before = op.count

        def one(x: np.ndarray, s: int = s) -> np.ndarray:
            V = torch.zeros((S, n), dtype=like.dtype, device=like.device)
            V[s] = torch.as_tensor(
                np.array(x, copy=True), dtype=like.dtype
            )  # x may be a read-only view (.imag)
            return apply(V)[s].detach().cpu().double().numpy()

        vals, residual = _arpack_block(one, n, method, rng)
        residuals.append(residual)
        counts.append(op.count - before)
        rows.append(vals[: method.eigenvalues])
    width = max(len(r) for r in rows)
    out = np.full((S, width), np.nan + 0j)
    for s, r in enumerate(rows):
        out[s, : len(r)] = r
    vals_t = torch.as_tensor(out, device=like.device).to(complex_dtype(like.dtype))
    residual_t = torch.as_tensor(residuals, dtype=like.dtype, device=like.device)
    most = max(counts)
    finite = all_finite(residual_t)  # a non-finite block has a NaN residual
    return _result(quantity, method, vals_t, vals_t, residual_t, most, finite, most, start)


def _arpack_block(one, n: int, method: ScipyEigs, rng) -> tuple[np.ndarray, float]:
    """Eigenvalues of one n×n block by modulus, and the leading pair's residual."""
    from scipy.sparse.linalg import LinearOperator as ScipyOperator
    from scipy.sparse.linalg import eigs

    k = min(method.eigenvalues, n - 2)
    if k < 1:  # ARPACK needs k < n − 1: tiny blocks go dense
        M = np.stack([one(e) for e in np.eye(n)], axis=1)
        if not np.isfinite(M).all():  # LAPACK must not see inf/NaN
            return np.full(n, np.nan + 0j), math.nan
        vals, vecs = np.linalg.eig(M)
    else:
        operator = ScipyOperator((n, n), matvec=one, dtype=np.float64)
        vals, vecs = eigs(operator, k=k, which="LM", tol=method.tol, v0=rng.standard_normal(n))
    order = np.argsort(-np.abs(vals))
    vals, vecs = vals[order], vecs[:, order]
    x = vecs[:, 0]
    Ax = one(x.real) + 1j * one(x.imag)
    return vals, float(np.linalg.norm(Ax - vals[0] * x) / np.linalg.norm(x))
