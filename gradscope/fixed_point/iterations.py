"""The iterations behind :func:`~gradscope.find_fixed_point`: damped Picard and Anderson, keeping the best iterate."""

from __future__ import annotations

import math

import torch

from ..layout import SampleLayout
from ..residual import relative_residual
from .methods import Anderson, FixedPointResult, Picard

__all__ = ["Tracker", "run_anderson", "run_picard"]


class Tracker:
    """Keeps each sample's best iterate and its residual."""

    def __init__(self, h0: torch.Tensor, rtol: float, atol: float) -> None:
        self.best = h0.clone()
        n = SampleLayout(h0.shape, per_sample=True).rows
        self.best_abs = torch.full((n,), math.inf, dtype=h0.dtype, device=h0.device)
        self.best_rel = self.best_abs.clone()
        self.rtol, self.atol = rtol, atol
        self.trace: list[float] = []

    def update(self, h: torch.Tensor, fh: torch.Tensor) -> bool:
        """Record ``h`` (with ``F(h)``) where it beats a sample's best; ``True`` once all converged."""
        absolute, relative = relative_residual(h, fh)
        finite = torch.isfinite(absolute) & torch.isfinite(h.reshape(absolute.shape[0], -1)).all(1)
        better = finite & (relative < self.best_rel)
        mask = SampleLayout(h.shape, per_sample=True).expand(better)
        self.best = torch.where(mask, h, self.best)
        self.best_abs = torch.where(better, absolute, self.best_abs)
        self.best_rel = torch.where(better, relative, self.best_rel)
        current = float(relative.max()) if bool(finite.all()) else math.inf
        self.trace.append(current)
        return bool(self.converged_per_sample.all())

    @property
    def converged_per_sample(self) -> torch.Tensor:
        """Whether each sample's best iterate meets ``atol`` or ``rtol``."""
        return (self.best_abs <= self.atol) | (self.best_rel <= self.rtol)

    def result(self, steps: int, evaluations: int) -> FixedPointResult:
        """The best iterates as a :class:`~gradscope.fixed_point.FixedPointResult`."""
        return FixedPointResult(
            value=self.best,
            converged=bool(self.converged_per_sample.all()),
            residual=float(self.best_rel.max()),
            residual_per_sample=self.best_rel,
            absolute_residual_per_sample=self.best_abs,
            trace=self.trace,
            steps=steps,
            evaluations=evaluations,
        )


def run_picard(f, h0, method: Picard, rtol, atol, max_steps) -> FixedPointResult:
    """Damped fixed-point iteration ``h ← (1 − λ)h + λF(h)``, best iterate kept."""
    lam = method.damping
    tracker = Tracker(h0, rtol, atol)
    h = h0
    for step in range(1, max_steps + 1):
        fh = f(h)
        if tracker.update(h, fh) or not math.isfinite(tracker.trace[-1]):
            return tracker.result(step, step)
        h = fh if lam == 1.0 else (1 - lam) * h + lam * fh
    fh = f(h)
    tracker.update(h, fh)
    return tracker.result(max_steps, max_steps + 1)


def run_anderson(f, h0, method: Anderson, rtol, atol, max_steps, per_sample) -> FixedPointResult:
    """Anderson acceleration with mixing weights per sample (or one set), best iterate kept."""
    shape = h0.shape
    n_rows = SampleLayout(h0.shape, per_sample).rows
    m, beta, reg = method.memory + 1, method.mixing, method.regularization
    X = h0.new_zeros(n_rows, m, h0.numel() // n_rows)
    FX = torch.zeros_like(X)
    tracker = Tracker(h0, rtol, atol)

    def evaluate(x_flat: torch.Tensor) -> torch.Tensor:
        h = x_flat.reshape(shape)
        fh = f(h)
        tracker.update(h, fh)
        return fh.reshape(n_rows, -1)

    X[:, 0] = h0.reshape(n_rows, -1)
    FX[:, 0] = evaluate(X[:, 0])
    if tracker.converged_per_sample.all() or max_steps == 1:
        return tracker.result(1, 1)
    X[:, 1] = FX[:, 0]
    FX[:, 1] = evaluate(X[:, 1])
    H = h0.new_zeros(n_rows, m + 1, m + 1)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    y = h0.new_zeros(n_rows, m + 1, 1)
    y[:, 0] = 1
    eye = torch.eye(m, dtype=h0.dtype, device=h0.device)
    ridge_factor = max(reg, 10 * torch.finfo(h0.dtype).eps)
    tiny = torch.finfo(h0.dtype).tiny
    steps = 2
    while steps < max_steps and not tracker.converged_per_sample.all():
        if not math.isfinite(tracker.trace[-1]):
            break
        n = min(steps, m)
        G = FX[:, :n] - X[:, :n]
        GG = torch.bmm(G, G.transpose(1, 2))
        # A ridge relative to the residuals' size: an absolute one would swamp GGᵀ near
        # convergence and stall the method at the ridge's scale.
        ridge = ridge_factor * GG.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(tiny)
        H[:, 1 : n + 1, 1 : n + 1] = GG + ridge[:, None, None] * eye[:n, :n]
        alpha = torch.linalg.solve(H[:, : n + 1, : n + 1], y[:, : n + 1])[:, 1 : n + 1, 0]
        slot = steps % m
        mixed_f = (alpha[:, None] @ FX[:, :n])[:, 0]
        mixed_x = (alpha[:, None] @ X[:, :n])[:, 0]
        X[:, slot] = beta * mixed_f + (1 - beta) * mixed_x
        FX[:, slot] = evaluate(X[:, slot])
        steps += 1
    return tracker.result(steps, steps)
