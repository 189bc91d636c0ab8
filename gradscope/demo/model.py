"""The demo's model: a small DEQ classifier on digits, and its equilibrium as a problem.

:class:`~gradscope.demo.DigitsDEQ` is input projection → :class:`~gradscope.ImplicitLayer` with a
:class:`~gradscope.synthetic.TanhCell` → linear head; it trains in seconds on two CPU
cores. :func:`~gradscope.demo.equilibrium_problem` turns the model at a batch into a
:class:`~gradscope.FixedPointProblem` and the cross-entropy's cotangent (the demo's
timings, ``gradscope sweep --model digits``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..estimators import Estimator
from ..fixed_point import FixedPointResult, find_fixed_point
from ..layers import ForwardSolver, ImplicitLayer
from ..problem import FixedPointProblem
from ..synthetic import TanhCell

__all__ = ["DigitsDEQ", "equilibrium_problem"]


class DigitsDEQ(nn.Module):
    r"""A small DEQ classifier: ``x ↦ z = U x + b ↦ h* = tanh(W h* + z) ↦ logits = V h* + c``.

    Args:
        width: state width d of the implicit layer.
        estimator: the layer's backward (default ``Neumann(5, 0.5)``).
        solver: the layer's :class:`~gradscope.layers.ForwardSolver` (default Anderson, rtol 1e-4).
        spectral_norm: initial ``‖W‖₂`` of the cell.
        n_in: input features (64 for digits).
        classes: number of classes.

    Attributes:
        project: the input projection (``nn.Linear``).
        layer: the :class:`~gradscope.ImplicitLayer` (its ``cell`` is a
            :class:`~gradscope.synthetic.TanhCell`).
        head: the classifier head (``nn.Linear``).

    Example:
        >>> import torch, gradscope as gs
        >>> _ = torch.manual_seed(0)
        >>> model = gs.demo.DigitsDEQ(width=16)
        >>> model(torch.randn(5, 64)).shape
        torch.Size([5, 10])

    """

    def __init__(
        self,
        width: int = 48,
        estimator: Estimator | None = None,
        solver: ForwardSolver | None = None,
        spectral_norm: float = 0.7,
        n_in: int = 64,
        classes: int = 10,
    ) -> None:
        super().__init__()
        self.project = nn.Linear(n_in, width)
        self.layer = ImplicitLayer(TanhCell(width, spectral_norm), estimator, solver)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, classes)``."""
        z = self.project(x)
        h = self.layer(z, h0=torch.zeros_like(z))
        return self.head(h)


def equilibrium_problem(
    model: DigitsDEQ, x: torch.Tensor, y: torch.Tensor, rtol: float = 1e-6, max_steps: int = 200
) -> tuple[FixedPointResult, FixedPointProblem, torch.Tensor]:
    """The model's equilibrium on ``(x, y)``: the forward result, the problem and the cotangent.

    The cotangent is the cross-entropy's gradient at h*; the problem does not judge h*
    (check ``fp``).

    Returns:
        ``(fp, problem, g)``: the forward solve's result, the problem at its h* and
        ``g = ∂ℓ/∂h*``.

    """
    with torch.no_grad():
        z = model.project(x)
    fp = find_fixed_point(
        model.layer.cell, z, h0=torch.zeros_like(z), rtol=rtol, max_steps=max_steps, warn=False
    )
    problem = FixedPointProblem.from_module(model.layer.cell, fp.value, z, check=False)
    h = fp.value.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model.head(h), y), h)
    return fp, problem, g
