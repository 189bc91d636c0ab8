"""Test cases with known answers: linear cells with a chosen spectrum, tanh and MLP cells."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

import gradscope as gs

DT = torch.float64


def scaled_matrix(d: int, rho: float, *, kind: str = "random", seed: int = 0) -> torch.Tensor:
    """A d×d matrix with spectral radius ``rho``.

    kind: "random" (Gaussian: non-normal, complex eigenvalues), "symmetric" (normal, real),
    "nonnormal" (upper-triangular with large off-diagonal part), "rotation" (complex leading pair).
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "symmetric":
        Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
        eigs = torch.linspace(-0.5, 1.0, d, dtype=DT)
        W = Q @ torch.diag(eigs) @ Q.T
    elif kind == "nonnormal":
        W = torch.diag(torch.linspace(0.2, 1.0, d, dtype=DT)) + torch.triu(
            torch.randn(d, d, generator=g, dtype=DT), 1
        )
    elif kind == "rotation":
        W = 0.3 * torch.randn(d, d, generator=g, dtype=DT) / d**0.5
        W[:2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=DT) * 3.0
    else:
        W = torch.randn(d, d, generator=g, dtype=DT)
    radius = torch.linalg.eigvals(W).abs().max()
    return W * (rho / radius)


def seeded_linear_(layer: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """Redo nn.Linear's default initialisation with draws from ``generator``.

    The same distribution and order of draws as ``nn.Linear.reset_parameters`` (weight, then
    bias), so a generator seeded s gives what ``torch.manual_seed(s)`` did, without
    touching the global RNG.
    """
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        if layer.bias is not None:
            bound = 1 / math.sqrt(layer.weight.shape[1])
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


@contextlib.contextmanager
def global_seed(seed: int):
    """Seed the global RNG inside the block and give the caller's state back after it.

    Only for what can draw from nowhere else: a library model without a generator
    argument, dropout, or a test of what the library does to the global RNG. Everything
    else takes a ``torch.Generator().manual_seed(...)``.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class LinearCell(nn.Module):
    """F(h, x) = h Wᵀ + x Uᵀ + b (rows are samples)."""

    def __init__(self, W: torch.Tensor, n: int = 3, seed: int = 1) -> None:
        super().__init__()
        d = W.shape[0]
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(W.clone())
        self.U = nn.Parameter(torch.randn(d, n, generator=g, dtype=W.dtype))
        self.b = nn.Parameter(torch.randn(d, generator=g, dtype=W.dtype))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return h @ self.W.T + x @ self.U.T + self.b

    def equilibrium(self, x: torch.Tensor) -> torch.Tensor:
        d = self.W.shape[0]
        eye = torch.eye(d, dtype=self.W.dtype)
        rhs = (x @ self.U.T + self.b).T
        return torch.linalg.solve(eye - self.W.detach(), rhs.detach()).T


class TanhCell(nn.Module):
    """F(h, x) = tanh(W h + U x + b)."""

    def __init__(self, d: int = 8, n: int = 4, scale: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = seeded_linear_(nn.Linear(d, d, bias=False), g)
        self.U = seeded_linear_(nn.Linear(n, d), g)
        with torch.no_grad():
            self.W.weight.copy_(scaled_matrix(d, scale, seed=seed).to(self.W.weight))
        self.double()

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(h) + self.U(x))


class MLPCell(nn.Module):
    """A two-layer MLP cell F(h, x) = W2 σ(W1 [h, x] + b1) + b2, kept contractive."""

    def __init__(self, d: int = 6, n: int = 3, width: int = 10, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = seeded_linear_(nn.Linear(d + n, width), g)
        self.l2 = seeded_linear_(nn.Linear(width, d), g)
        with torch.no_grad():
            self.l2.weight.mul_(0.8)
        self.double()

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.nn.functional.softplus(self.l1(torch.cat([h, x], -1))))


def solved_problem(cell: nn.Module, x: torch.Tensor, rtol: float = 1e-13) -> gs.FixedPointProblem:
    fp = gs.find_fixed_point(
        cell, x, h0=torch.zeros(x.shape[0], cell_width(cell), dtype=DT), rtol=rtol, max_steps=2000
    )
    assert fp.converged, fp
    return gs.FixedPointProblem.from_module(cell, fp.value, x)


def cell_width(cell: nn.Module) -> int:
    if isinstance(cell, LinearCell):
        return cell.W.shape[0]
    if isinstance(cell, TanhCell):
        return cell.W.weight.shape[0]
    return cell.l2.weight.shape[0]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)
