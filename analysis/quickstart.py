"""Quickstart: exact vs phantom gradients on a small tanh DEQ cell (seconds on a CPU).

Claim: on a contractive cell, the exact implicit gradient is certified (true residual
≤ rtol) and the phantom gradients UPG(5, 0.5), NPG(5, 0.5) point the same way
(cosine > 0.9), with UPG = NPG at an exact fixed point. Prints PASS/FAIL.
"""

from __future__ import annotations

import torch

import gradscope as gs


class Cell(torch.nn.Module):
    """F(h, x) = tanh(W h + U x + b)."""

    def __init__(self, d: int = 64, n: int = 32) -> None:
        super().__init__()
        self.W = torch.nn.Linear(d, d, bias=False)
        self.U = torch.nn.Linear(n, d)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(h) + self.U(x))


def main() -> bool:
    torch.manual_seed(0)
    cell = Cell().double()
    x = torch.randn(16, 32, dtype=torch.float64)
    fp = gs.find_fixed_point(cell, x, rtol=1e-12)
    print(fp)
    problem = gs.FixedPointProblem.from_module(cell, fp.value, x)
    g = torch.randn_like(fp.value)
    exact = gs.estimate_gradient(problem, g, gs.Exact())
    print(exact.solution)
    ok = exact.solution.converged
    for estimator in (gs.Unrolled(5, 0.5), gs.Neumann(5, 0.5), gs.OneStep()):
        estimate = gs.estimate_gradient(problem, g, estimator)
        comparison = gs.compare(estimate, exact)
        print()
        print(comparison)
        ok &= comparison.cosine > 0.9
    upg = gs.estimate_gradient(problem, g, gs.Unrolled(5, 0.5))
    npg = gs.estimate_gradient(problem, g, gs.Neumann(5, 0.5))
    gap = gs.compare(upg, npg).relative_error
    print(f"\nUPG vs NPG at the fixed point: relative difference {gap:.2e}")
    ok &= gap < 1e-8
    print("PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
