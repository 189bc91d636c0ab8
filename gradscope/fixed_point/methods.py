"""The forward methods and their result: :class:`Picard`, :class:`Anderson`, :class:`FixedPointResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import (
    check_damping,
    check_positive,
    check_steps,
)

__all__ = ["Anderson", "FixedPointResult", "Picard"]


@dataclass(frozen=True)
class Picard:
    """Damped fixed-point iteration ``h ← (1 − λ) h + λ F(h)``.

    Converges when ρ of the damped Jacobian ``(1 − λ)I + λJ`` is below 1.

    Args:
        damping: λ in (0, 1]; 1 is the plain iteration ``h ← F(h)``.

    Example:
        >>> import torch, gradscope as gs
        >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
        >>> method = gs.fixed_point.Picard(damping=0.8)
        >>> fp = gs.find_fixed_point(lambda h, x: torch.tanh(0.5 * h + x), x, method=method, rtol=1e-10)
        >>> fp.converged, fp.residual < 1e-10
        (True, True)

    """

    damping: float = 1.0

    def __post_init__(self) -> None:
        check_damping("Picard", self.damping)


@dataclass(frozen=True)
class Anderson:
    """Anderson acceleration (type II), per sample, as in the DEQ reference code.

    Mixes the last ``memory`` iterates with weights α minimising ``‖Σ α_i (F(h_i) − h_i)‖``
    subject to ``Σ α_i = 1`` (a ridge of ``regularization`` times the mean squared
    residual keeps the normal equations solvable), then ``h ← mixing · Σ α_i F(h_i) + (1 − mixing) · Σ α_i h_i``.

    Args:
        memory: number of past iterates mixed (m ≥ 1).
        mixing: β in (0, 1].
        regularization: relative ridge added to the normal equations (> 0).

    Example:
        >>> import torch, gradscope as gs
        >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
        >>> method = gs.fixed_point.Anderson(memory=3)
        >>> fp = gs.find_fixed_point(lambda h, x: torch.tanh(0.5 * h + x), x, method=method, rtol=1e-12)
        >>> fp.converged, fp.residual < 1e-12
        (True, True)

    """

    memory: int = 5
    mixing: float = 1.0
    regularization: float = 1e-8

    def __post_init__(self) -> None:
        check_steps("Anderson", "memory", self.memory)
        check_damping("Anderson", self.mixing)
        check_positive("Anderson", "regularization", self.regularization)


@dataclass
class FixedPointResult:
    """What :func:`~gradscope.find_fixed_point` found.

    Attributes:
        value: the best iterate (smallest residual), detached.
        converged: whether every sample met ``rtol`` (or ``atol``).
        residual: the largest per-sample relative residual ``‖F(h) − h‖ / ‖F(h)‖``.
        residual_per_sample: relative residual per sample.
        absolute_residual_per_sample: ``‖F(h) − h‖`` per sample.
        trace: the largest relative residual after each step.
        steps: iterations taken.
        evaluations: calls of F.

    Example:
        >>> import torch, gradscope as gs
        >>> h0 = torch.zeros(3, dtype=torch.float64)
        >>> fp = gs.find_fixed_point(lambda h: 0.5 * h + 1.0, h0=h0, rtol=1e-12)  # h* = 2
        >>> fp.converged, fp.value.round(decimals=8).tolist(), len(fp.trace) == fp.steps
        (True, [2.0, 2.0, 2.0], True)

    """

    value: torch.Tensor
    converged: bool
    residual: float
    residual_per_sample: torch.Tensor
    absolute_residual_per_sample: torch.Tensor
    trace: list[float] = field(repr=False)
    steps: int
    evaluations: int

    def __repr__(self) -> str:
        return (
            f"FixedPointResult(converged={self.converged}, residual={self.residual:.3e}, "
            f"steps={self.steps}, evaluations={self.evaluations}, shape={tuple(self.value.shape)})"
        )
