r"""How far a state is from a fixed point: ``‖F(h) − h‖`` per sample, and when it is small.

See :ref:`theory-setting`. :class:`~gradscope.residual.FixedPointResidual` is what
:class:`~gradscope.FixedPointProblem` measures at h*; :func:`~gradscope.residual.default_fixed_point_rtol` is
the relative residual above which it warns; :func:`~gradscope.residual.relative_residual` computes both
norms per sample without overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layout import SampleLayout

__all__ = ["FixedPointResidual", "default_fixed_point_rtol", "relative_residual"]


def default_fixed_point_rtol(dtype: torch.dtype) -> float:
    """Relative fixed-point residual above which gradscope warns that h* is inexact.

    float64: 1e-6; float32: 1e-3; half precision: 1e-2. Looser than the solvers' defaults
    because a DEQ trained in float32 rarely solves its forward pass more tightly.

    Returns:
        The tolerance.

    """
    if dtype == torch.float64:
        return 1e-6
    if dtype == torch.float32:
        return 1e-3
    return 1e-2


@dataclass(frozen=True)
class FixedPointResidual:
    """How far h* is from a fixed point: ``‖F(h*) − h*‖`` and ``‖F(h*) − h*‖ / ‖F(h*)‖``.

    Attributes:
        absolute: per-sample absolute residual (shape ``(samples,)``).
        relative: per-sample relative residual.
        max_absolute: the largest absolute residual, as a float.
        max_relative: the largest relative residual, as a float.

    Example:
        >>> import torch, gradscope as gs
        >>> p = {"a": torch.tensor(0.5, dtype=torch.float64)}
        >>> h = torch.ones(2, dtype=torch.float64)  # F(h) = 1.5 h: not a fixed point
        >>> r = gs.FixedPointProblem.from_function(lambda p, h: 1.5 * h, p, h, check=False).residual
        >>> round(r.max_absolute, 4), round(r.max_relative, 4)
        (0.7071, 0.3333)

    """

    absolute: torch.Tensor
    relative: torch.Tensor

    @property
    def max_absolute(self) -> float:
        """The largest per-sample absolute residual."""
        return float(self.absolute.max())

    @property
    def max_relative(self) -> float:
        """The largest per-sample relative residual."""
        return float(self.relative.max())

    def __repr__(self) -> str:
        return (
            f"FixedPointResidual(max_relative={self.max_relative:.3e}, "
            f"max_absolute={self.max_absolute:.3e}, samples={self.absolute.numel()})"
        )


def relative_residual(h: torch.Tensor, fh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(‖F(h) − h‖, ‖F(h) − h‖ / ‖F(h)‖)``, with 0/0 read as 0.

    The norms are taken in float64 (a float32 state near 1e20 would overflow its squared
    norm to inf and the ratio to NaN); the results come back in the state's dtype, where a
    value above its range reads inf, never NaN.

    Returns:
        The absolute and the relative residual, each of shape ``(samples,)``.

    Example:
        >>> import torch
        >>> from gradscope.residual import relative_residual
        >>> h = torch.full((1, 4), 3e20)
        >>> [round(float(r), 6) for r in relative_residual(h, 1.5 * h)[1]]
        [0.333333]

    """
    dtype = h.dtype
    layout = SampleLayout(h.shape, per_sample=True)
    wide = torch.float64 if h.device.type != "mps" else torch.float32
    absolute = layout.norms(fh.to(wide) - h.to(wide))
    scale = layout.norms(fh.to(wide))
    tiny = torch.finfo(wide).tiny
    relative = torch.where(
        absolute == 0, torch.zeros_like(absolute), absolute / scale.clamp_min(tiny)
    )
    return absolute.to(dtype), relative.to(dtype)
