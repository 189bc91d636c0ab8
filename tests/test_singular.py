"""A singular I − J is explained: the eigenvalue of J at 1 and its eigenvector's structure.

The reference cell is a pre-LayerNorm residual block, F(h) = h − a·(LN(h) − LN(t)): its
fixed point is h* = t and, since LN(h + c·1) = LN(h) for every position, J·1 = 1 per
position exactly — the exact implicit gradient does not exist.
"""

import pytest
import torch

import gradscope as gs

DT = torch.float64


def layernorm_residual_problem():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 3, 4, generator=g, dtype=DT)  # batch 2, 3 positions, 4 features
    ln = torch.nn.functional.layer_norm

    def fn(p, h):
        return h - p["a"] * (ln(h, (4,)) - ln(t, (4,)))

    return gs.FixedPointProblem.from_function(fn, {"a": torch.tensor(0.5, dtype=DT)}, t)


def test_layernorm_invariance_is_found_and_named():
    problem = layernorm_residual_problem()
    s = gs.theory.explain_singularity(problem)
    assert s.singular and abs(s.eigenvalue - 1) < 1e-10
    assert "constant across the features" in s.structure
    # the vector really is a null vector of I − J (checked with jacrev, not our operators)
    J = torch.func.jacrev(lambda h: problem.fn(problem.params, h))(problem.h_star)[s.sample, :, :, s.sample]
    v = s.vector
    Jv = torch.einsum("pfqg,qg->pf", J, v)
    torch.testing.assert_close(Jv, v, rtol=0, atol=1e-10)
    assert "the exact implicit gradient does not exist" in s.message


def test_failed_exact_solve_points_at_the_explanation():
    problem = layernorm_residual_problem()
    g = torch.randn(problem.h_star.shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    with pytest.warns(gs.ConvergenceWarning, match="explain_singularity"):
        est = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.GMRES(max_steps=200)))
    assert not est.status.ok


def test_a_regular_problem_is_not_called_singular():
    W = torch.tensor([[0.5, 0.2], [0.0, 0.3]], dtype=DT)
    problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=DT))
    s = gs.theory.explain_singularity(problem)
    assert not s.singular and abs(s.eigenvalue - 0.5) < 1e-12
    assert abs(s.sigma_min - float(torch.linalg.svdvals(torch.eye(2, dtype=DT) - W).min())) < 1e-12
    assert "not singular" in s.message


def test_minimum_norm_adjoint_is_an_explicit_surrogate_matching_pinv():
    problem = layernorm_residual_problem()
    g = torch.randn(problem.h_star.shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    with pytest.warns(gs.ConvergenceWarning, match="minimum-norm least-squares solution"):
        est = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.MinimumNorm()))
    assert est.status is gs.Status.LEAST_SQUARES
    # reference: per sample, u = pinv(I − Jᵀ) g with J from jacrev (12×12 blocks)
    J = torch.func.jacrev(lambda h: problem.fn(problem.params, h))(problem.h_star)
    eye = torch.eye(12, dtype=DT)
    for s in range(2):
        Js = J[s, :, :, s].reshape(12, 12)
        u = torch.linalg.pinv(eye - Js.T, rtol=1e-10) @ g[s].reshape(-1)
        torch.testing.assert_close(est.adjoint[s].reshape(-1), u, rtol=1e-8, atol=1e-10)


def test_minimum_norm_on_a_regular_problem_is_the_exact_solution():
    W = torch.tensor([[0.5, 0.2], [0.0, 0.3]], dtype=DT)
    problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=DT))
    g = torch.tensor([1.0, -2.0], dtype=DT)
    mine = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.MinimumNorm()))
    exact = torch.linalg.solve(torch.eye(2, dtype=DT) - W.T, g)
    assert mine.status.ok
    torch.testing.assert_close(mine.adjoint, exact, rtol=1e-12, atol=1e-14)
