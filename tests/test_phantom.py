"""Phantom gradients (UPG, NPG, one-step) and compare()."""

import math

import pytest
import torch
from cases import (
    DT,
    LinearCell,
    TanhCell,
    randn,
    scaled_matrix,
    solved_problem,
)

import gradscope as gs
from gradscope._memory import peak_allocated_bytes


@pytest.fixture(scope="module")
def tanh_problem():
    return solved_problem(TanhCell(d=8, n=4, scale=0.8), randn(5, 4), rtol=1e-15)


@pytest.mark.parametrize("damping", [0.3, 0.5, 1.0])
def test_upg_equals_npg_at_an_exact_fixed_point(tanh_problem, damping):
    g = randn(5, 8, seed=1)
    for k in range(1, 11):
        upg = gs.estimate_gradient(tanh_problem, g, gs.Unrolled(k, damping))
        npg = gs.estimate_gradient(tanh_problem, g, gs.Neumann(k, damping))
        assert gs.compare(upg, npg).relative_error < 1e-12, k
        for a, b in zip(upg.input_grads, npg.input_grads):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_upg_and_npg_differ_off_the_fixed_point(tanh_problem):
    p = tanh_problem
    h = p.h_star + 0.05 * randn(*p.h_star.shape, seed=3)
    off = gs.FixedPointProblem.from_function(p.fn, p.params, h, *p.inputs, rtol=10.0)
    g = randn(5, 8, seed=1)
    one_u = gs.estimate_gradient(off, g, gs.Unrolled(1, 0.5))
    one_n = gs.estimate_gradient(off, g, gs.Neumann(1, 0.5))
    assert gs.compare(one_u, one_n).relative_error < 1e-13  # k = 1: both λ F_θᵀ g at h
    for k in (2, 5):
        upg = gs.estimate_gradient(off, g, gs.Unrolled(k, 0.5))
        npg = gs.estimate_gradient(off, g, gs.Neumann(k, 0.5))
        assert gs.compare(upg, npg).relative_error > 1e-4, k


def _dense_state_jacobian(problem):
    """J = ∂F/∂h at h* as a dense (N, N) matrix (N = h*.numel()), by torch.func.jacrev.

    Independent of gradscope's VJP/JVP operators: what the tests below check them against.
    """
    p, h = problem, problem.h_star
    J = torch.func.jacrev(lambda hh: p.fn(p.params, hh, *p.inputs))(h)
    return J.reshape(h.numel(), h.numel())


def _dense_param_jacobians(problem):
    """F_θ at h*, one dense block per parameter: name → tensor of shape (*h*.shape, *θ.shape)."""
    p = problem
    return torch.func.jacrev(lambda params: p.fn(params, p.h_star, *p.inputs))(dict(p.params))


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("damping", [0.4, 1.0])
def test_neumann_error_identity(tanh_problem, k, damping):
    # u* − u_k = (B_λᵀ)^k u*   [derived, docs/explanation/phantom_gradients.rst, theory-neumann-error], with J, B_λᵀ and u* built densely
    # by torch.func.jacrev and torch.linalg.solve, not by gradscope's operators.
    g = randn(5, 8, seed=1)
    J = _dense_state_jacobian(tanh_problem)
    N = J.shape[0]
    eye = torch.eye(N, dtype=DT)
    # J is not symmetric, so an estimator that used Jv where it needs Jᵀv fails below
    assert (J - J.T).abs().max() > 0.1 * J.abs().max()
    u_star = torch.linalg.solve(eye - J.T, g.reshape(-1))
    BT = ((1 - damping) * eye + damping * J).T
    expected = torch.linalg.matrix_power(BT, k) @ u_star
    wrong = torch.linalg.matrix_power(BT.T, k) @ u_star  # the identity with B_λ for B_λᵀ
    atol = 1e-10 * u_star.abs().max()
    assert not torch.allclose(wrong, expected, atol=1e3 * atol)  # the two can be told apart
    npg = gs.estimate_gradient(tanh_problem, g, gs.Neumann(k, damping))
    assert torch.allclose(u_star - npg.adjoint.reshape(-1), expected, atol=atol)
    exact = gs.estimate_gradient(tanh_problem, g, gs.Exact(gs.solvers.Dense()))
    assert torch.allclose(exact.adjoint.reshape(-1), u_star, atol=atol)


def test_one_step_is_F_theta_transpose_g(tanh_problem):
    # Reference: the dense F_θ from torch.func.jacrev, contracted with g by hand (not
    # gradscope's param_vjp or param_jacobian_dense).
    g = randn(5, 8, seed=1)
    one = gs.estimate_gradient(tanh_problem, g, gs.OneStep())
    jac = _dense_param_jacobians(tanh_problem)
    assert set(one.grads) == set(jac) == {"W.weight", "U.weight", "U.bias"}
    for name, block in jac.items():
        reference = torch.tensordot(g, block, dims=g.dim())  # Σ_{b,i} g_{b,i} ∂F_{b,i}/∂θ
        assert one.grads[name].shape == reference.shape
        assert torch.allclose(one.grads[name], reference, rtol=1e-12, atol=1e-14), name
    assert one.cost.vjps == 1
    assert (
        gs.compare(one, gs.estimate_gradient(tanh_problem, g, gs.Unrolled(1, 1.0))).relative_error
        < 1e-13
    )


def test_neumann_converges_at_rate_rho_B():
    # Normal J (symmetric W) with known spectrum: ‖u* − u_k‖ ≤ ρ(B)^k ‖u*‖, and the ratio → ρ(B).
    W = scaled_matrix(6, 0.9, kind="symmetric")
    cell = LinearCell(W)
    x = randn(1, 3)
    problem = gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)
    g = randn(1, 6, seed=2)
    lam = 0.7
    mu = torch.linalg.eigvalsh(W)
    rho_B = float((1 - lam * (1 - mu)).abs().max())
    exact = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense()))
    errors = []
    for k in (10, 20, 40, 41):
        npg = gs.estimate_gradient(problem, g, gs.Neumann(k, lam))
        err = float((exact.adjoint - npg.adjoint).norm() / exact.adjoint.norm())
        assert err <= rho_B**k * (1 + 1e-8)
        errors.append(err)
    assert errors[-1] / errors[-2] == pytest.approx(rho_B, rel=1e-3)
    assert (
        gs.compare(gs.estimate_gradient(problem, g, gs.Neumann(400, lam)), exact).relative_error
        < 1e-12
    )


def test_divergent_neumann_series_is_reported_never_silent():
    # μ = −3: with λ = 1, ρ(B) = 3 and the series diverges (docs/explanation/damping.rst (theory-damping)).
    W = -3.0 * torch.eye(3, dtype=DT)
    cell = LinearCell(W)
    x = randn(2, 3)
    problem = gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)
    g = randn(2, 3, seed=1)
    with pytest.warns(gs.ConvergenceWarning, match="the terms of the damped series grew"):
        gs.estimate_gradient(problem, g, gs.Neumann(10, 1.0))
    with pytest.warns(gs.ConvergenceWarning, match="returned non-finite values"):
        gs.estimate_gradient(problem, g, gs.Neumann(700, 1.0))
    # λ = 0.4 < λ_max = 0.5 makes it converge
    good = gs.estimate_gradient(problem, g, gs.Neumann(200, 0.4))
    exact = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense()))
    assert gs.compare(good, exact).relative_error < 1e-10


def test_peak_allocated_bytes_measures_real_allocations():
    mb10 = 10_000_000 // 8

    def hold():
        x = torch.empty(mb10, dtype=DT)
        return x.fill_(1.0).sum()

    def churn():
        for _ in range(30):
            torch.empty(mb10, dtype=DT).fill_(1.0)

    def inside_one_op():  # the 20 MB temporary of x * 2 lives and dies inside the norm
        x = torch.ones(2 * mb10, dtype=DT)
        return torch.linalg.vector_norm(x * 2)

    assert 10_000_000 <= peak_allocated_bytes(hold) < 10_100_000
    assert 10_000_000 <= peak_allocated_bytes(churn) < 10_100_000  # frees count: no build-up
    assert 40_000_000 <= peak_allocated_bytes(inside_one_op) < 40_100_000


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ),
    ],
)
def test_neumann_peak_memory_is_flat_in_k_and_unrolled_grows(device):
    # The allocator's peak during the whole call, a fresh problem each time (its graph of
    # F at h* is built inside the call): NPG holds one graph of F whatever k is, UPG k.
    batch, d = 64, 256
    cell = TanhCell(d=d, n=4, scale=0.5)
    x = randn(batch, 4)
    h_star = solved_problem(cell, x).h_star.to(device)
    cell, x, g = cell.to(device), x.to(device), randn(batch, d, seed=1).to(device)
    state = batch * d * 8  # bytes of h (float64); W is 4 states, the graph of F 2

    def peak(estimator):
        def call():
            problem = gs.FixedPointProblem.from_module(cell, h_star, x)
            return gs.estimate_gradient(problem, g, estimator)

        return peak_allocated_bytes(call, device)

    peak(gs.Unrolled(2, 0.5))  # warm-up: one-time allocations (a cuBLAS workspace) stay out
    ks = (1, 5, 20)
    npg = [peak(gs.Neumann(k, 0.5)) for k in ks]
    upg = [peak(gs.Unrolled(k, 0.5)) for k in ks]
    # measured (torch 2.13, CPU): NPG 1.06, 1.37, 1.37 MB; UPG 0.93, 2.63, 6.57 MB
    assert npg[0] > 4 * state  # it does measure: the gradient of W alone is 4 states
    assert npg[2] <= npg[1] + state  # flat: 15 more steps, not one more state
    assert max(npg) <= npg[0] + 4 * state  # k > 1 adds a few work vectors, no graph
    assert upg[2] - upg[1] >= 15 * state  # at least a state per unrolled step
    assert upg[2] >= 3 * upg[0] and upg[2] >= 3 * npg[2]
    # Cost.graph_bytes (autograd's saved tensors) accounts for UPG's measured growth
    saved = [
        gs.estimate_gradient(
            gs.FixedPointProblem.from_module(cell, h_star, x), g, gs.Unrolled(k, 0.5)
        ).cost.graph_bytes
        for k in ks
    ]
    assert upg[2] - upg[1] == pytest.approx(saved[2] - saved[1], rel=0.1)


# ---------------------------------------------------------------------------- compare
def test_compare_invariants(tanh_problem):
    g = randn(5, 8, seed=1)
    exact = gs.estimate_gradient(tanh_problem, g, gs.Exact())
    npg = gs.estimate_gradient(tanh_problem, g, gs.Neumann(3, 0.5))
    same = gs.compare(exact, exact)
    assert same.cosine == pytest.approx(1.0, abs=1e-15) and same.relative_error == 0 and same.ascent
    c = gs.compare(npg, exact)
    scaled = gs.estimators.GradientEstimate.from_grads(
        {n: 7.5 * v for n, v in npg.grads.items()}, npg.input_grads
    )
    assert gs.compare(scaled, exact).cosine == pytest.approx(c.cosine, abs=1e-14)
    assert gs.compare(scaled, exact).norm_ratio == pytest.approx(7.5 * c.norm_ratio, rel=1e-12)
    # per-parameter numbers add up to the whole
    assert sum(a.inner for a in c.per_param.values()) == pytest.approx(c.inner, rel=1e-12)
    assert sum(a.absolute_error**2 for a in c.per_param.values()) == pytest.approx(
        c.absolute_error**2, rel=1e-12
    )
    assert sum(a.estimate_norm**2 for a in c.per_param.values()) == pytest.approx(
        c.overall.estimate_norm**2, rel=1e-12
    )
    # against a direct computation
    a, b = npg.flat(), exact.flat()
    assert c.cosine == pytest.approx(float(a @ b / (a.norm() * b.norm())), abs=1e-14)
    assert c.relative_error == pytest.approx(float((a - b).norm() / b.norm()), rel=1e-12)
    assert c.per_input[0] is not None and c.per_input[0].cosine > 0.5
    d = c.to_dict()
    assert d["overall"]["cosine"] == c.cosine and set(d["per_param"]) == set(c.per_param)
    text = repr(c)
    assert "W.weight" in text and "cosine" in text and "Neumann(3, 0.5) vs Exact(GMRES)" in text
    negated = gs.estimators.GradientEstimate.from_grads({n: -v for n, v in exact.grads.items()})
    assert not gs.compare(negated, exact).ascent and gs.compare(
        negated, exact
    ).cosine == pytest.approx(-1.0)


def test_compare_rejects_mismatches(tanh_problem):
    g = randn(5, 8, seed=1)
    exact = gs.estimate_gradient(tanh_problem, g, gs.Exact())
    other = gs.estimators.GradientEstimate.from_grads({"W.weight": exact.grads["W.weight"]})
    with pytest.raises(ValueError, match="cover different parameters"):
        gs.compare(other, exact)
    bad_shape = gs.estimators.GradientEstimate.from_grads({n: v.reshape(-1) for n, v in exact.grads.items()})
    with pytest.raises(ValueError, match="has shape"):
        gs.compare(bad_shape, exact)
    with pytest.raises(TypeError, match="expected a gradscope.estimators.GradientEstimate"):
        gs.compare(exact.grads, exact)


def test_zero_reference_is_not_silently_wrong():
    zero = gs.estimators.GradientEstimate.from_grads({"w": torch.zeros(3)})
    one = gs.estimators.GradientEstimate.from_grads({"w": torch.ones(3)})
    c = gs.compare(one, zero)
    assert math.isnan(c.cosine) and c.relative_error == math.inf


def test_estimator_validation():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="steps"):
            gs.Neumann(steps=bad)
        with pytest.raises(ValueError, match="steps"):
            gs.Unrolled(steps=bad)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"damping=.*expected a number in \(0, 1\]"):
            gs.Neumann(5, bad)
        with pytest.raises(ValueError, match="damping"):
            gs.Unrolled(5, bad)
    with pytest.raises(TypeError, match="steps"):
        gs.Neumann(steps=2.0)
    assert gs.Neumann(5, 0.5).name == "Neumann(5, 0.5)" and gs.OneStep().name == "OneStep"


def test_user_gradient_from_a_training_backward():
    # A user's own UPG-style training backward, judged with user_gradient + compare.
    cell = TanhCell(d=6, n=4, scale=0.6)
    x = randn(3, 4)
    problem = solved_problem(cell, x)
    g = randn(3, 6, seed=1)
    h = problem.h_star
    for _ in range(5):
        h = 0.5 * h + 0.5 * cell(h, x)
    h.backward(g)
    user = gs.estimators.user_gradient(cell, problem, name="my UPG")
    upg = gs.estimate_gradient(problem, g, gs.Unrolled(5, 0.5))
    assert gs.compare(user, upg).relative_error < 1e-12
    cell.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="has no .grad"):
        gs.estimators.user_gradient(cell, problem)


def test_unrolled_growth_and_non_finite_values_are_reported():
    # ρ(J) = 1.5: the damped series diverges at λ = 1 (Neumann warns; Unrolled did not)
    cell = LinearCell(scaled_matrix(6, 1.5, kind="symmetric"))
    x = randn(2, 3, seed=4)
    problem = gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)
    g = randn(2, 6, seed=5)
    with pytest.warns(gs.ConvergenceWarning, match="the terms of the damped series grew"):
        grown = gs.estimate_gradient(problem, g, gs.Unrolled(40, 1.0))
    assert grown.status is gs.Status.SERIES_GREW and grown.series_ratio > 1e6
    with pytest.warns(gs.ConvergenceWarning, match="non-finite"):
        blown = gs.estimate_gradient(problem, g, gs.Unrolled(3000, 1.0))
    assert blown.status is gs.Status.NON_FINITE
    fine = gs.estimate_gradient(problem, g, gs.Unrolled(5, 0.2))  # λ < λ_max = 0.8: contracts
    assert fine.status.ok and fine.series_ratio < 1


def test_implicit_layer_reports_a_growing_unrolled_backward():
    cell = LinearCell(scaled_matrix(6, 1.5, kind="symmetric"))
    x = randn(2, 3, seed=4)
    solver = gs.layers.ForwardSolver(rtol=1e-10, max_steps=200, per_sample=False)
    layer = gs.ImplicitLayer(cell, gs.Unrolled(40, 1.0), solver)
    h = layer(x, h0=torch.zeros(2, 6, dtype=DT))
    assert layer.last_forward.converged  # Anderson solves the linear map despite ρ(J) > 1
    with pytest.warns(gs.ConvergenceWarning, match="ImplicitLayer: Unrolled\\(40, 1\\)"):
        h.backward(randn(2, 6, seed=5))
    assert layer.last_backward.status is gs.Status.SERIES_GREW
    quiet = gs.ImplicitLayer(cell, gs.Unrolled(3, 0.2), solver)
    quiet(x, h0=torch.zeros(2, 6, dtype=DT)).backward(randn(2, 6, seed=5))
    assert quiet.last_backward.status.ok and quiet.last_backward.series_ratio < 1


def test_strict_layer_raises_before_an_unreliable_gradient_reaches_grad():
    cell = LinearCell(scaled_matrix(6, 1.5, kind="symmetric"))
    x = randn(2, 3, seed=4)
    solver = gs.layers.ForwardSolver(rtol=1e-10, max_steps=200, per_sample=False)
    for estimator in (gs.Neumann(40, 1.0), gs.Unrolled(40, 1.0)):
        cell.zero_grad(set_to_none=True)
        layer = gs.ImplicitLayer(cell, estimator, solver, strict=True)
        h = layer(x, h0=torch.zeros(2, 6, dtype=DT))
        with pytest.raises(gs.ConvergenceError, match="the terms of the damped series grew"):
            h.backward(randn(2, 6, seed=5))
        if isinstance(estimator, gs.Neumann):  # the adjoint hook raises before any .grad
            assert all(p.grad is None for p in cell.parameters())
    with pytest.raises(TypeError, match="strict='yes' is a str"):
        gs.ImplicitLayer(cell, strict="yes")
