"""The exact implicit gradient against independent references."""

import pytest
import torch
from cases import DT, LinearCell, MLPCell, TanhCell, randn, scaled_matrix, solved_problem

import gradscope as gs


def closed_form(cell: LinearCell, x: torch.Tensor, g: torch.Tensor):
    """∇ of ⟨g, h*⟩ for F(h) = h Wᵀ + x Uᵀ + b, computed outside gradscope."""
    W = cell.W.detach()
    d = W.shape[0]
    h = cell.equilibrium(x)
    u = torch.linalg.solve(torch.eye(d, dtype=DT) - W.T, g.T).T  # rows u_b = (I − Wᵀ)⁻¹ g_b
    return {"W": u.T @ h, "U": u.T @ x, "b": u.sum(0)}, u @ cell.U.detach()


@pytest.mark.parametrize("rho", [0.3, 0.9, 0.99])
@pytest.mark.parametrize(
    ("solver", "tol"),
    [
        (gs.solvers.Dense(), 1e-10),
        (gs.solvers.GMRES(rtol=1e-12), 1e-8),
        (gs.solvers.BiCGSTAB(rtol=1e-12), 1e-8),
        (gs.solvers.GMRES(rtol=1e-12, per_sample=False), 1e-8),
    ],
    ids=["dense", "gmres", "bicgstab", "gmres-whole"],
)
def test_linear_cell_closed_form(rho, solver, tol):
    cell = LinearCell(scaled_matrix(10, rho, kind="random", seed=3))
    x = randn(5, 3, seed=1)
    g = randn(5, 10, seed=2)
    problem = gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)
    est = gs.estimate_gradient(problem, g, gs.Exact(solver))
    ref, ref_x = closed_form(cell, x, g)
    for name, value in ref.items():
        assert torch.allclose(est.grads[name], value, rtol=tol, atol=tol * value.abs().max()), name
    assert torch.allclose(est.input_grads[0], ref_x, rtol=tol, atol=tol * ref_x.abs().max())
    assert est.solution.converged


def test_fixed_point_iteration_closed_form_at_moderate_rho():
    cell = LinearCell(scaled_matrix(10, 0.9, kind="random", seed=3))
    x, g = randn(5, 3, seed=1), randn(5, 10, seed=2)
    problem = gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)
    est = gs.estimate_gradient(
        problem, g, gs.Exact(gs.solvers.FixedPointIteration(rtol=1e-12, max_steps=2000))
    )
    ref, _ = closed_form(cell, x, g)
    assert torch.allclose(est.grads["W"], ref["W"], rtol=1e-8, atol=1e-8 * ref["W"].abs().max())


def loss_of_params(cell, x, g, flat_params, names, shapes, h0):
    params, offset = {}, 0
    for n, s in zip(names, shapes):
        k = int(torch.tensor(s).prod()) if len(s) else 1
        params[n] = flat_params[offset : offset + k].reshape(s)
        offset += k
    fp = gs.find_fixed_point(
        lambda h, x: torch.func.functional_call(cell, params, (h, x)),
        x,
        h0=h0,
        rtol=1e-14,
        atol=1e-300,
        max_steps=3000,
        warn=False,
    )
    return (g * fp.value).sum()


@pytest.mark.parametrize(
    "make_cell",
    [lambda: TanhCell(d=6, n=4, scale=0.8), lambda: MLPCell(d=5, n=4)],
    ids=["tanh", "mlp"],
)
def test_central_finite_differences_resolving_the_fixed_point(make_cell):
    cell = make_cell()
    x = randn(3, 4, seed=1)
    problem = solved_problem(cell, x, rtol=1e-14)
    g = randn(*problem.h_star.shape, seed=2)
    est = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.GMRES(rtol=1e-13)))
    names = problem.param_names
    shapes = [tuple(problem.params[n].shape) for n in names]
    theta = torch.cat([problem.params[n].reshape(-1) for n in names])
    grad = est.flat()
    eps = 1e-5
    for seed in range(3):
        direction = randn(theta.numel(), seed=10 + seed)
        plus = loss_of_params(cell, x, g, theta + eps * direction, names, shapes, problem.h_star)
        minus = loss_of_params(cell, x, g, theta - eps * direction, names, shapes, problem.h_star)
        fd = (plus - minus) / (2 * eps)
        assert torch.allclose(grad @ direction, fd, rtol=1e-6), (float(grad @ direction), float(fd))
    # input gradient, same way
    direction = randn(*x.shape, seed=20)

    def loss_x(xx):
        fp = gs.find_fixed_point(
            cell, xx, h0=problem.h_star, rtol=1e-14, atol=1e-300, max_steps=3000, warn=False
        )
        return (g * fp.value).sum()

    fd = (loss_x(x + eps * direction) - loss_x(x - eps * direction)) / (2 * eps)
    assert torch.allclose((est.input_grads[0] * direction).sum(), fd, rtol=1e-6)


def test_differentiating_through_a_long_unrolled_solve_agrees():
    # The other classic reference: backprop through 300 plain iterations from h*.
    cell = TanhCell(d=6, n=4, scale=0.7)
    x = randn(3, 4)
    problem = solved_problem(cell, x)
    g = randn(3, 6, seed=4)
    exact = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.GMRES(rtol=1e-13)))
    unrolled = gs.estimate_gradient(problem, g, gs.Unrolled(steps=300, damping=1.0))
    assert gs.compare(unrolled, exact).relative_error < 1e-10


def test_cost_is_reported():
    problem = solved_problem(TanhCell(d=6, n=4), randn(3, 4))
    est = gs.estimate_gradient(problem, randn(3, 6, seed=1))
    assert est.cost.vjps == est.solution.matvecs + 1
    assert est.cost.seconds > 0 and est.cost.graph_bytes > 0 and est.cost.peak_cuda_bytes is None
    assert est.adjoint.shape == (3, 6)
    assert "Exact(GMRES)" in repr(est)
