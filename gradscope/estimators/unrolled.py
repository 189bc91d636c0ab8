r"""The unrolling-based phantom gradient (UPG): backpropagate through k damped steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .._checks import all_finite
from .._memory import GraphMeter
from ..status import Status
from .base import Adjoint, Gradient
from .neumann import DampedSteps, neumann_adjoint

if TYPE_CHECKING:
    from ..operators import LinearOperator
    from ..problem import FixedPointProblem

__all__ = ["Unrolled", "trajectory_ratio", "unrolled_status"]


@dataclass(frozen=True)
class Unrolled(DampedSteps):
    """The unrolling-based phantom gradient UPG A(k, λ) (Geng et al. 2021, equation 9).

    From ``h₀ = stopgrad(h*)`` run ``h_{t+1} = (1 − λ)h_t + λF(h_t, x; θ)`` for k steps
    and backpropagate ``g`` through them; Jacobians are taken along the trajectory,
    memory is k graphs of F (:ref:`theory-phantom-gradients`). At an exact fixed point
    every ``h_t = h*`` and UPG equals NPG, so :meth:`adjoint` is the Neumann adjoint;
    :meth:`gradient` differentiates the actual trajectory.

    Args:
        steps: k ≥ 1.
        damping: λ in (0, 1].

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> g = torch.ones(2, dtype=torch.float64)
        >>> upg = gs.estimate_gradient(problem, g, gs.Unrolled(3, 0.5))
        >>> npg = gs.estimate_gradient(problem, g, gs.Neumann(3, 0.5))
        >>> torch.allclose(upg.grads["W"], npg.grads["W"])
        True

    """

    def adjoint(self, JT: LinearOperator, g: torch.Tensor) -> Adjoint:
        """The adjoint at an exact fixed point: NPG's ``λ Σ_{t<k} (B_λᵀ)^t g``."""
        return neumann_adjoint(JT, g, self.steps, float(self.damping))

    def unroll(self, step: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """``h_k`` from ``h_0 = h``: k steps ``h ← (1 − λ)h + λ·step(h)`` (recorded by autograd)."""
        lam = float(self.damping)
        for _ in range(self.steps):
            fh = step(h)
            h = fh if lam == 1.0 else (1 - lam) * h + lam * fh
        return h

    def gradient(self, problem: FixedPointProblem, g: torch.Tensor) -> Gradient:
        """Backpropagate g through k damped steps from stopgrad(h*)."""
        meter = GraphMeter()
        params = {n: p.detach().requires_grad_(True) for n, p in problem.params.items()}
        inputs = tuple(
            x.detach().requires_grad_(True) if x.is_floating_point() else x for x in problem.inputs
        )
        # h₀ is a leaf too: its gradient (∏ B_tᵀ) g is the trajectory's analogue of the
        # Neumann series' last term, so growth is seen at no extra product.
        h0 = problem.h_star.detach().requires_grad_(True)
        leaves = [*params.values(), *(x for x in inputs if x.is_floating_point()), h0]
        with torch.enable_grad(), meter.hooks():
            h = self.unroll(lambda h: problem.fn(params, h, *inputs), h0)
        found = torch.autograd.grad(h, leaves, g, allow_unused=True)
        full = [torch.zeros_like(leaf) if gr is None else gr for leaf, gr in zip(leaves, found)]
        grads = dict(zip(params, full[: len(params)]))
        unreached = tuple(n for n, gr in zip(params, found[: len(params)]) if gr is None)
        rest = iter(full[len(params) : -1])
        input_grads = tuple(next(rest) if x.is_floating_point() else None for x in inputs)
        ratio = trajectory_ratio(g, full[-1])
        status = unrolled_status(self.steps, ratio, full[:-1])
        return Gradient(grads, input_grads, None, self.steps, meter.bytes, status, ratio, unreached)


def trajectory_ratio(g: torch.Tensor, g_h0: torch.Tensor) -> float:
    """``‖(∏ B_tᵀ) g‖ / ‖g‖``: how much the cotangent grew on its way back to h₀."""
    g_norm = float(torch.linalg.vector_norm(g))
    return float(torch.linalg.vector_norm(g_h0)) / g_norm if g_norm > 0 else 0.0


def unrolled_status(k: int, ratio: float, grads: list[torch.Tensor]) -> Status:
    """NON_FINITE, SERIES_GREW (k > 1 and the cotangent grew) or SUCCESS."""
    if not math.isfinite(ratio) or not all_finite(*grads):
        return Status.NON_FINITE
    if k > 1 and ratio > 1.0:
        return Status.SERIES_GREW
    return Status.SUCCESS
