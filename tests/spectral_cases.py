"""Synthetic fixed-point problems with a controlled spectrum (test references).

Linear cells ``F(h) = W h + x`` per sample, with W built to a chosen spectrum:

* normal: ``W = Q diag(μ) Qᵀ`` (real μ) or ``Q blockdiag(r R_φ) Qᵀ`` (complex pairs);
* non-normal: ``W = Q T Qᵀ`` with T upper triangular (eigenvalues on its diagonal) and
  a large strictly upper part, so ‖W‖₂ ≫ ρ(W).

h* solves ``(I − W)h = x`` exactly (dense solve), so the residual is at machine precision.
"""

from __future__ import annotations

import math

import torch

import gradscope as gs

DT = torch.float64


def _orthogonal(d: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
    return q * torch.sign(torch.diagonal(r))


def rotation_block(r: float, phi: float) -> torch.Tensor:
    c, s = math.cos(phi), math.sin(phi)
    return r * torch.tensor([[c, -s], [s, c]], dtype=DT)


def block_matrix(
    d: int,
    g: torch.Generator,
    *,
    kind: str,
    rho: float = 0.95,
    rest: float = 0.6,
    offdiag: float = 0.0,
    phi: float = 2.0,
    with_eigenvalues: bool = False,
):
    """A d×d matrix with spectral radius ``rho``.

    kind: ``"real"`` (leading real eigenvalue ``-rho`` or ``rho``), ``"complex"`` (leading
    pair ``rho·e^{±iφ}``). The other eigenvalues are real, uniform in ``[-rest, rest]``.
    ``offdiag`` > 0 adds a strictly upper-triangular part of that scale (non-normal).
    With ``with_eigenvalues`` returns ``(W, μ)``, the eigenvalues known by construction.
    """
    T = torch.zeros(d, d, dtype=DT)
    others = (torch.rand(d, generator=g, dtype=DT) * 2 - 1) * rest
    T.diagonal().copy_(others)
    if kind == "real":
        T[0, 0] = rho
    elif kind == "complex":
        T[:2, :2] = rotation_block(rho, phi)
    else:
        raise ValueError(kind)
    if offdiag:
        upper = torch.triu(
            torch.randn(d, d, generator=g, dtype=DT), diagonal=2 if kind == "complex" else 1
        )
        upper[:2, :2] = 0
        T = T + offdiag * upper / math.sqrt(d)
    Q = _orthogonal(d, g)
    W = Q @ T @ Q.T
    if not with_eigenvalues:
        return W
    mu = others.to(torch.complex128).clone()
    if kind == "real":
        mu[0] = rho
    else:
        mu[0], mu[1] = (
            rho * complex(math.cos(phi), math.sin(phi)),
            rho * complex(math.cos(phi), -math.sin(phi)),
        )
    return W, mu


def linear_problem(W: torch.Tensor, seed: int = 0) -> gs.FixedPointProblem:
    """``F(h) = W h + x`` with W of shape (d, d) or per sample (B, d, d)."""
    g = torch.Generator().manual_seed(seed)
    if W.dim() == 2:
        x = torch.randn(W.shape[0], generator=g, dtype=DT)
        h = torch.linalg.solve(torch.eye(W.shape[0], dtype=DT) - W, x)

        def fn(p, h, x):
            return p["W"] @ h + x
    else:
        B, d, _ = W.shape
        x = torch.randn(B, d, generator=g, dtype=DT)
        h = torch.linalg.solve(torch.eye(d, dtype=DT) - W, x.unsqueeze(-1)).squeeze(-1)

        def fn(p, h, x):
            return torch.einsum("bij,bj->bi", p["W"], h) + x

    return gs.FixedPointProblem.from_function(fn, {"W": W}, h, x)


def tanh_problem(d: int, n: int, batch: int, scale: float, seed: int = 0) -> gs.FixedPointProblem:
    """``F(h) = tanh(W h + U x + b)`` with W ~ N(0, scale²/d), solved to rtol 1e-12."""
    return gs.synthetic.random_tanh_problem(d, n, batch, scale, seed)
