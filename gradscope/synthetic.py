r"""Known-answer problems for tests and checks: a tanh cell with a controlled Jacobian.

* :class:`~gradscope.synthetic.TanhCell` — ``F(h, x) = tanh(W h + x)`` with ``‖W‖₂`` set on construction, so
  ``‖J‖₂ = ‖diag(1 − tanh²) W‖₂ ≤ ‖W‖₂``: a spectral norm below 1 makes F a contraction
  (:ref:`theory-exact-gradient`), above 1 allows ``ρ(J) ≥ 1``.
* :func:`~gradscope.synthetic.random_tanh_problem` — a seeded float64 problem
  ``tanh(W h + U x + b)`` solved to rtol 1e-12.

The demo's model and data (:class:`~gradscope.demo.DigitsDEQ`,
:func:`~gradscope.demo.load_digits_tensors`) live in :mod:`gradscope.demo`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_positive, check_steps
from .fixed_point import find_fixed_point
from .problem import FixedPointProblem

__all__ = ["TanhCell", "random_tanh_problem"]


class TanhCell(nn.Module):
    r"""``F(h, x) = tanh(W h + x)`` (``x`` already projected to the state's width).

    Args:
        d: state width.
        spectral_norm: ``‖W‖₂`` after initialisation (> 0); ``‖J‖₂ ≤ ‖W‖₂`` at every h.
        generator: optional generator for the initial W (the global RNG otherwise).

    Example:
        >>> import torch, gradscope as gs
        >>> cell = gs.synthetic.TanhCell(8, spectral_norm=0.5)
        >>> round(float(torch.linalg.matrix_norm(cell.W.weight.detach(), ord=2)), 6)
        0.5

    """

    def __init__(
        self, d: int, spectral_norm: float = 0.8, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        check_steps("TanhCell", "d", d)
        check_positive("TanhCell", "spectral_norm", spectral_norm)
        self.W = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            w = torch.randn(d, d, generator=generator) / d**0.5
            w *= spectral_norm / torch.linalg.matrix_norm(w, ord=2)
            self.W.weight.copy_(w)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step ``tanh(W h + x)``."""
        return torch.tanh(self.W(h) + x)


def random_tanh_problem(
    d: int, n: int = 16, batch: int = 1, scale: float = 1.0, seed: int = 0
) -> FixedPointProblem:
    r"""A seeded float64 problem ``F(h, x) = tanh(W h + U x + b)``, h* solved to rtol 1e-12.

    ``W ~ N(0, scale²/d)``, ``U ~ N(0, 1/n)``, ``b ~ N(0, 0.01)``, ``x ~ N(0, 1)`` of shape
    ``(batch, n)``, all from ``torch.Generator().manual_seed(seed)``: the same seed gives
    the same problem. A reference family for spectral and gradient checks.

    Returns:
        The problem at its solved h*.

    Example:
        >>> import gradscope as gs
        >>> problem = gs.synthetic.random_tanh_problem(8, batch=2, scale=0.5)
        >>> problem.h_star.shape, problem.residual.max_relative < 1e-12
        (torch.Size([2, 8]), True)

    """
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    p = {
        "W": torch.randn(d, d, generator=g, dtype=dt) * scale / math.sqrt(d),
        "U": torch.randn(d, n, generator=g, dtype=dt) / math.sqrt(n),
        "b": torch.randn(d, generator=g, dtype=dt) * 0.1,
    }
    x = torch.randn(batch, n, generator=g, dtype=dt)

    def fn(p, h, x):
        return torch.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])

    fp = find_fixed_point(
        lambda h, x: fn(p, h, x), x, h0=torch.zeros(batch, d, dtype=dt), rtol=1e-12, max_steps=500
    )
    return FixedPointProblem.from_function(fn, p, fp.value, x)
