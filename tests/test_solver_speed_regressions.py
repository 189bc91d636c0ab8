"""Correctness guards for the vectorised GMRES (accumulated Givens factor, CGS2 in bmm).

Every case is checked against ``torch.linalg.solve`` on the dense matrix; no timing
asserts. The cases stress the bookkeeping that the vectorisation touched: rows that stop
at different steps, restarts, lucky breakdown, a zero right-hand side, an initial guess.
"""

from __future__ import annotations

import pytest
import torch

import gradscope as gs

DT = torch.float64


def block_map(M: torch.Tensor) -> gs.operators.LinearOperator:
    """``v ↦ M_s v_s`` on a batch of samples (M: (samples, n, n))."""
    return gs.operators.FunctionOperator(lambda v: torch.einsum("sij,sj->si", M, v), M.new_zeros(M.shape[:2]), "M", independent_samples=True)


def blocks(samples: int, n: int, radii, seed: int = 0) -> torch.Tensor:
    """I − Jᵀ blocks with ρ(J_s) = radii[s] (random non-normal J_s)."""
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(samples, n, n, generator=g, dtype=DT)
    J = J / torch.linalg.eigvals(J).abs().amax(1)[:, None, None]
    J = J * torch.as_tensor(radii, dtype=DT)[:, None, None]
    return torch.eye(n, dtype=DT) - J.transpose(1, 2)


def reference(M: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve(M, b.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("restart", [12, 30, 100])
@pytest.mark.parametrize("per_sample", [True, False])
def test_mixed_conditioning_and_restarts(restart, per_sample):
    # Samples stop after very different numbers of steps (ρ from 0.1 to 0.99). (GMRES(k)
    # with k ≤ 8 stagnates on the ρ = 0.99 block, before and after the vectorisation.)
    M = blocks(5, 24, [0.1, 0.5, 0.9, 0.99, 0.3])
    b = torch.randn(5, 24, generator=torch.Generator().manual_seed(1), dtype=DT)
    solver = gs.solvers.GMRES(rtol=1e-11, restart=restart, max_steps=1000, per_sample=per_sample)
    sol = gs.solvers.linear_solve(block_map(M), b, solver)
    assert sol.converged and sol.residual <= 1e-11
    torch.testing.assert_close(sol.value, reference(M, b), rtol=1e-8, atol=1e-9)
    # The certificate is the true residual of the returned value.
    r = b - torch.einsum("sij,sj->si", M, sol.value)
    true = (r.norm(dim=1) / b.norm(dim=1)) if per_sample else (r.norm() / b.norm()).reshape(1)
    torch.testing.assert_close(sol.residual_per_sample, true, rtol=1e-6, atol=1e-20)
    assert sol.trace.shape == (sol.steps, 5 if per_sample else 1)
    # The last running estimate is below the tolerance for every row.
    assert bool((sol.trace[-1] <= 1e-11 * (1 + 1e-6)).all())


def test_lucky_breakdown_and_zero_rhs():
    # A = 2I: the Krylov space is exhausted after one step (breakdown) for every row; a
    # zero right-hand side needs no step at all.
    n = 7
    M = 2 * torch.eye(n, dtype=DT).expand(3, n, n).clone()
    b = torch.randn(3, n, generator=torch.Generator().manual_seed(2), dtype=DT)
    b[1] = 0.0
    sol = gs.solvers.linear_solve(block_map(M), b, gs.solvers.GMRES(per_sample=True))
    assert sol.converged and sol.steps == 1
    torch.testing.assert_close(sol.value, b / 2)
    assert float(sol.value[1].abs().max()) == 0.0


def test_initial_guess_and_exact_krylov_dimension():
    # n = 6 < restart: GMRES is exact after n steps; starting from x0 it still certifies.
    M = blocks(4, 6, [0.95, 0.5, 0.8, 0.2], seed=3)
    b = torch.randn(4, 6, generator=torch.Generator().manual_seed(4), dtype=DT)
    x0 = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=DT)
    sol = gs.solvers.linear_solve(block_map(M), b, gs.solvers.GMRES(rtol=1e-12, per_sample=True), x0=x0)
    assert sol.converged and sol.steps <= 6 + 2
    torch.testing.assert_close(sol.value, reference(M, b), rtol=1e-9, atol=1e-10)
    # Already solved: no Arnoldi step, one product for the certificate.
    again = gs.solvers.linear_solve(block_map(M), b, gs.solvers.GMRES(rtol=1e-8, per_sample=True), x0=sol.value)
    assert again.converged and again.steps == 0 and again.matvecs == 1


def test_float32_and_max_steps():
    M = blocks(3, 32, [0.9, 0.6, 0.99], seed=6).float()
    b = torch.randn(3, 32, generator=torch.Generator().manual_seed(7)).float()
    sol = gs.solvers.linear_solve(block_map(M), b, gs.solvers.GMRES(rtol=1e-5, per_sample=True))
    assert sol.converged and sol.value.dtype == torch.float32
    torch.testing.assert_close(
        sol.value.double(), reference(M.double(), b.double()), rtol=1e-4, atol=1e-4
    )
    with pytest.warns(gs.ConvergenceWarning):
        short = gs.solvers.linear_solve(block_map(M), b, gs.solvers.GMRES(rtol=1e-5, max_steps=3, per_sample=True))
    assert not short.converged and short.steps == 3 and short.trace.shape == (3, 3)
    # The running estimate after 3 steps is the GMRES residual over K_3: check it
    # against the least-squares problem solved densely, per row.
    for s in range(3):
        A, r0 = M[s].double(), b[s].double()
        K = torch.stack([torch.linalg.matrix_power(A, i) @ r0 for i in range(3)], 1)
        Q, _ = torch.linalg.qr(K)
        y = torch.linalg.lstsq(A @ Q, r0.unsqueeze(1)).solution
        best = float((r0 - A @ Q @ y.squeeze(1)).norm() / r0.norm())
        assert abs(float(short.trace[-1, s]) - best) <= 1e-4 * best + 1e-6
