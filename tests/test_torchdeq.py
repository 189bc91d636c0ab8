"""Cross-checks against TorchDEQ 0.1.0 (skipped when torchdeq is not installed).

* TorchDEQ's IFT backward, solved tightly, equals gradscope's ``Exact`` (GMRES and the
  dense LU reference) on the same cell, equilibrium and cotangent.
* TorchDEQ's phantom gradient ``grad=k, tau=λ`` (k damped steps
  ``z ← τ f(z) + (1 − τ) z`` from its detached solver output, backpropagated) equals
  gradscope's ``Unrolled(k, λ)`` at the same h* — also when h* is far from converged,
  where UPG and NPG differ.

TorchDEQ's gradients are read off the cell's ``.grad`` with ``gs.estimators.user_gradient``: the
"judge a user's own training gradient" path.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradscope as gs

torchdeq = pytest.importorskip("torchdeq")

DT = torch.float64


class TanhCell(nn.Module):
    """F(h, x) = tanh(W h + U x + b), W scaled to spectral radius ``rho``."""

    def __init__(self, d: int, n: int, rho: float, seed: int, input_scale: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Linear(d, d, bias=False, dtype=DT)
        self.U = nn.Linear(n, d, dtype=DT)
        with torch.no_grad():
            W = torch.randn(d, d, generator=g, dtype=DT)
            self.W.weight.copy_(W * (rho / torch.linalg.eigvals(W).abs().max()))
            self.U.weight.copy_(input_scale * torch.randn(d, n, generator=g, dtype=DT) / n**0.5)
            self.U.bias.copy_(0.1 * input_scale * torch.randn(d, generator=g, dtype=DT))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(h) + self.U(x))


def run_torchdeq(cell, x, cotangent, **deq_kwargs):
    """One TorchDEQ training forward + backward of ``ℓ = ⟨c, z_out⟩``.

    Returns the state z* that TorchDEQ's gradient function started from (its detached
    solver output, recorded at the first call of f with grad enabled), the backward
    solver statistics (IFT only) and the cell's parameter ``.grad``s are left filled.
    """
    deq = torchdeq.get_deq(core="indexing", f_solver="fixed_point_iter", **deq_kwargs)
    deq.train()
    started_from = []

    def f(z):
        if torch.is_grad_enabled() and not started_from:
            started_from.append(z.detach().clone())
        return cell(z, x)

    backward_stats = []
    cell.zero_grad(set_to_none=True)
    z_out, _ = deq(f, torch.zeros_like(cotangent), backward_writer=backward_stats.append)
    (z_out[-1] * cotangent).sum().backward()
    return started_from[0], backward_stats


def make_case(rho=0.5, d=12, n=4, batch=6, seed=0, input_scale=1.0):
    cell = TanhCell(d, n, rho, seed, input_scale)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, n, generator=g, dtype=DT)
    c = torch.randn(batch, d, generator=g, dtype=DT)
    return cell, x, c


def test_ift_backward_matches_exact():
    cell, x, c = make_case(rho=0.5)
    z_star, stats = run_torchdeq(
        cell, x, c, ift=True, f_max_iter=500, f_tol=1e-14, b_max_iter=500, b_tol=1e-14
    )
    # The tight backward solve did converge (TorchDEQ's own absolute-step statistic).
    assert float(stats[0]["abs_lowest"].max()) < 1e-12
    problem = gs.FixedPointProblem.from_module(cell, z_star, x)
    assert problem.residual.max_relative < 1e-13
    theirs = gs.estimators.user_gradient(cell, problem, name="TorchDEQ IFT")
    exact = gs.estimate_gradient(problem, c, gs.Exact(gs.solvers.GMRES(rtol=1e-13)))
    dense = gs.estimate_gradient(problem, c, gs.Exact(gs.solvers.Dense()))
    assert exact.solution.converged
    assert gs.compare(theirs, exact).relative_error < 1e-10
    assert gs.compare(theirs, dense).relative_error < 1e-10
    for name in theirs.grads:  # per parameter too, not only the concatenation
        torch.testing.assert_close(theirs.grads[name], dense.grads[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("f_max_iter", [500, 4])
def test_phantom_grad_matches_unrolled(f_max_iter):
    # f_max_iter=4: TorchDEQ stops far from the fixed point; the phantom still starts
    # from its solver output, and so does our Unrolled when given the same h*.
    cell, x, c = make_case(rho=0.8, seed=1)
    z_star, _ = run_torchdeq(cell, x, c, grad=5, tau=0.5, f_max_iter=f_max_iter, f_tol=1e-14)
    with torch.no_grad():
        residual = float((cell(z_star, x) - z_star).norm() / cell(z_star, x).norm())
    problem_rtol = 1.0 if f_max_iter < 10 else None  # inexact h* on purpose: no warning
    problem = gs.FixedPointProblem.from_module(cell, z_star, x, rtol=problem_rtol)
    theirs = gs.estimators.user_gradient(cell, problem, name="TorchDEQ grad=5 tau=0.5")
    upg = gs.estimate_gradient(problem, c, gs.Unrolled(5, 0.5))
    assert gs.compare(theirs, upg).relative_error < 1e-10
    for name in theirs.grads:
        torch.testing.assert_close(theirs.grads[name], upg.grads[name], rtol=1e-10, atol=1e-13)
    npg = gs.estimate_gradient(problem, c, gs.Neumann(5, 0.5))
    gap = gs.compare(npg, upg).relative_error
    if f_max_iter < 10:
        # Away from h*, UPG (trajectory Jacobians) and NPG (Jacobians at h*) differ.
        assert residual > 1e-3
        assert gap > 1e-4
    else:
        assert gap < 1e-10


def test_phantom_grad_differs_from_exact_at_high_rho():
    # Sanity of the comparison itself: the phantom is not the exact gradient.
    cell, x, c = make_case(rho=0.9, seed=2)
    z_star, _ = run_torchdeq(cell, x, c, grad=5, tau=0.5, f_max_iter=500, f_tol=1e-14)
    problem = gs.FixedPointProblem.from_module(cell, z_star, x)
    theirs = gs.estimators.user_gradient(cell, problem)
    exact = gs.estimate_gradient(problem, c, gs.Exact(gs.solvers.Dense()))
    assert gs.compare(theirs, exact).relative_error > 1e-2


def test_default_ift_backward_fails_silently_near_rho_one():
    # TorchDEQ's default backward (fixed-point iteration, 40 steps, abs tol 1e-6) at
    # ρ(J) near 1: no error or warning (warnings are errors here), yet the gradient
    # is off; gradscope's GMRES certifies the exact one. Tiny inputs keep tanh
    # unsaturated, so that ρ(J) at h* stays close to ρ(W) = 0.99.
    cell, x, c = make_case(rho=0.99, d=16, seed=3, input_scale=0.003)
    z_star, stats = run_torchdeq(cell, x, c, ift=True, f_max_iter=2000, f_tol=1e-13)
    problem = gs.FixedPointProblem.from_module(cell, z_star, x)
    rho = torch.linalg.eigvals(gs.operators.jacobian_transpose(problem).dense(per_sample=True))
    assert float(rho.abs().max()) > 0.97
    theirs = gs.estimators.user_gradient(cell, problem)
    exact = gs.estimate_gradient(problem, c, gs.Exact())
    dense = gs.estimate_gradient(problem, c, gs.Exact(gs.solvers.Dense()))
    assert exact.solution.converged and exact.solution.residual <= 1e-8
    assert gs.compare(exact, dense).relative_error < 1e-6
    assert float(stats[0]["nstep"].max()) >= 40  # ran out of steps
    assert gs.compare(theirs, dense).relative_error > 1e-3
