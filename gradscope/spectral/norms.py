r"""Singular values at the equilibrium: ‖J‖₂, σ_min(I − J), ‖B_λ^k‖₂ — or of any operator.

* ``‖J‖₂`` bounds ``‖B_λ^k‖₂ ≤ (1 − λ(1 − ‖J‖₂))^k`` [derived, :ref:`theory-steps`];
* ``σ_min(I − J)`` is the distance of the adjoint system to singularity (``1/σ_min`` is
  the amplification of errors in ``(I − Jᵀ)u = g``);
* ``‖B_λ^k‖₂`` with ``B_λ = (1 − λ)I + λJ`` is the exact worst-case relative error of
  the Neumann adjoint [derived, :ref:`theory-neumann-error`].

Each function takes a problem (the maps built from its J) or a
:class:`~gradscope.operators.LinearOperator` A (the same quantity of A); both need the
transpose, as Lanczos runs on ``AᵀA``.
"""

from __future__ import annotations

import time

import torch

from .._checks import all_finite, check_damping, check_steps, fail
from ..operators import Counted, LinearOperator, damped, jacobian_transpose
from ..problem import FixedPointProblem
from .krylov import flat_map, lanczos, nan_safe, sqrt_bound, start_block
from .methods import (
    DenseSpectrum,
    Lanczos,
    NormMethod,
    SpectralEstimate,
    check_method,
    check_operand,
)

__all__ = ["damped_power_norm", "smallest_singular_value", "spectral_norm"]


def spectral_norm(
    target: FixedPointProblem | LinearOperator, method: NormMethod | None = None
) -> SpectralEstimate:
    r"""Spectral norm ``‖J‖₂ = σ_max(J)`` at h*, or ``‖A‖₂`` of an operator: Lanczos on ``AᵀA``.

    One product with A and one with Aᵀ per step (for J: one JVP and one VJP).
    ``‖J‖₂ ≥ ρ(J)``, with equality for normal J. ``‖J‖₂ < 1`` makes F a contraction
    near h* and gives ``‖B_λ^k‖₂ ≤ (1 − λ(1 − ‖J‖₂))^k`` [derived, :ref:`theory-steps`].

    Args:
        target: the equilibrium (for its J) or a
            :class:`~gradscope.operators.LinearOperator` with a known transpose.
        method: :class:`~gradscope.spectral.Lanczos` (default) or :class:`~gradscope.spectral.DenseSpectrum`.

    Returns:
        A :class:`~gradscope.spectral.SpectralEstimate`; ``residual`` bounds ``|σ − σ̃|`` by the Ritz residual.

    Raises:
        TypeError: ``target`` or ``method`` of the wrong type, or an operator without
            a transpose.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 1.0], [0.0, 0.5]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> est = gs.spectral.spectral_norm(problem)
        >>> abs(est.value - float(torch.linalg.matrix_norm(W, 2))) < 1e-10
        True

    """
    call = "spectral_norm"
    target = check_operand(call, target)
    if isinstance(target, FixedPointProblem):
        return _singular(call, "‖J‖₂", _jacobian(target), 1, method, "max")
    return _singular(call, f"‖{target.name}‖₂", target, 1, method, "max")


def smallest_singular_value(
    target: FixedPointProblem | LinearOperator, method: NormMethod | None = None
) -> SpectralEstimate:
    r"""``σ_min(I − J)`` at h* (how far ``(I − Jᵀ)u = g`` is from singular), or ``σ_min(A)``.

    Errors in the adjoint right-hand side are amplified by up to ``1/σ_min(I − J)``; the
    implicit gradient does not exist when it is 0. Lanczos on ``AᵀA`` with
    ``A = I − J`` for a problem, or the operator A given (smallest Ritz value; one
    product with A and one with Aᵀ per step).

    Args:
        target: the equilibrium (for ``I − J``) or a
            :class:`~gradscope.operators.LinearOperator` with a known transpose.
        method: :class:`~gradscope.spectral.Lanczos` (default ``Lanczos(max_steps=300)``) or
            :class:`~gradscope.spectral.DenseSpectrum`. Check ``converged``: on tanh cells with d = 1024,
            100 steps left it about 2% high.

    Returns:
        A :class:`~gradscope.spectral.SpectralEstimate` whose ``value`` is the minimum over samples.

    Raises:
        TypeError: ``target`` or ``method`` of the wrong type, or an operator without
            a transpose.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.diag(torch.tensor([0.9, -0.5], dtype=torch.float64))
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> round(gs.spectral.smallest_singular_value(problem).value, 10)
        0.1

    """
    call = "smallest_singular_value"
    target = check_operand(call, target)
    # the smallest Ritz value converges more slowly than the largest: a longer default run
    method = Lanczos(max_steps=300) if method is None else method
    if isinstance(target, FixedPointProblem):
        J = _jacobian(target)
        return _singular(call, "σ_min(I − J)", J.identity() - J, 1, method, "min")
    return _singular(call, f"σ_min({target.name})", target, 1, method, "min")


def damped_power_norm(
    target: FixedPointProblem | LinearOperator,
    damping: float,
    steps: int,
    method: NormMethod | None = None,
) -> SpectralEstimate:
    r"""``‖B_λ^k‖₂`` with ``B_λ = (1 − λ)I + λJ``: the Neumann adjoint's worst-case error.

    The k-step Neumann (NPG) adjoint satisfies ``u* − u_k = (B_λᵀ)^k u*``, so
    ``‖u* − u_k‖ ≤ ‖B_λ^k‖₂ ‖u*‖`` with equality for some g [derived, :ref:`theory-neumann-error`].
    For non-normal J this can exceed 1 for small k even when ``ρ(B_λ) < 1``.
    Lanczos on ``(B^k)ᵀB^k``: 2k products per step. Given an operator A instead of a
    problem, ``B_λ = (1 − λ)I + λA`` (:func:`~gradscope.operators.damped`).

    Args:
        target: the equilibrium (for its J) or a
            :class:`~gradscope.operators.LinearOperator` with a known transpose.
        damping: λ in (0, 1].
        steps: k ≥ 1.
        method: :class:`~gradscope.spectral.Lanczos` (default) or :class:`~gradscope.spectral.DenseSpectrum`.

    Returns:
        The estimate of ``‖B_λ^k‖₂`` (its ``value``, bounds and convergence).

    Raises:
        ValueError: damping outside (0, 1] or steps < 1.
        TypeError: ``target`` or ``method`` of the wrong type, or an operator without
            a transpose.

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
    target = check_operand(call, target)
    lam = float(damping)
    if isinstance(target, FixedPointProblem):
        quantity = f"‖B_{lam:g}^{steps}‖₂"
        return _singular(call, quantity, damped(_jacobian(target), lam), steps, method, "max")
    B = damped(target, lam)
    return _singular(call, f"‖({B.name})^{steps}‖₂", B, steps, method, "max")


def _jacobian(problem: FixedPointProblem) -> LinearOperator:
    """``v ↦ Jv`` at the problem's h* (its transpose is the VJP)."""
    return jacobian_transpose(problem).T


def _transpose(call: str, A: LinearOperator) -> LinearOperator:
    try:
        return A.T
    except NotImplementedError:
        fail(
            call,
            f"the operator {A.name} has no known transpose; expected one (Lanczos runs on "
            "AᵀA). Build it with FunctionOperator(..., transpose=...) or from "
            "gradscope.operators.jacobian_transpose.",
            TypeError,
        )


def _singular(
    call: str,
    quantity: str,
    A: LinearOperator,
    power: int,
    method: NormMethod | None,
    which: str,
) -> SpectralEstimate:
    """The largest (``which="max"``) or smallest singular value of ``A^power`` per sample."""
    method = Lanczos() if method is None else method
    check_method(call, method, (Lanczos, DenseSpectrum))
    forward, backward = Counted(A), Counted(_transpose(call, A))
    layout = forward.layout()
    start = time.perf_counter()
    if isinstance(method, DenseSpectrum):
        blocks = forward.dense(per_sample=layout.by_sample)
        blocks = blocks if layout.by_sample else blocks[None]
        powered = torch.linalg.matrix_power(blocks, power)
        s = nan_safe(torch.linalg.svdvals, powered, powered.shape[:-1])
        per_sample = s[:, 0] if which == "max" else s[:, -1]
        residual = torch.zeros_like(per_sample)
        steps, converged = 1, all_finite(per_sample)
    else:

        def normal(v: torch.Tensor) -> torch.Tensor:  # (Aᵀ)^k A^k v
            for _ in range(power):
                v = forward(v)
            for _ in range(power):
                v = backward(v)
            return v

        start_vectors = start_block(layout, forward.like, method.seed)
        theta, res, steps, converged = lanczos(
            flat_map(normal, layout), start_vectors, method, which
        )
        per_sample, residual = sqrt_bound(theta, res)
    value = per_sample.max() if which == "max" else per_sample.min()
    return SpectralEstimate(
        quantity,
        method,
        float(value),
        per_sample,
        residual,
        forward.count + backward.count,
        converged,
        steps,
        seconds=time.perf_counter() - start,
    )
