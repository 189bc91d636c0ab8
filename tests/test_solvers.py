import warnings

import pytest
import torch
from cases import DT, LinearCell, TanhCell, randn, scaled_matrix, solved_problem

import gradscope as gs

ITERATIVE = [
    gs.solvers.GMRES(rtol=1e-11),
    gs.solvers.GMRES(rtol=1e-11, per_sample=False),
    gs.solvers.GMRES(rtol=1e-11, restart=6, max_steps=2000),
    gs.solvers.BiCGSTAB(rtol=1e-11),
    gs.solvers.BiCGSTAB(rtol=1e-11, per_sample=False),
    gs.solvers.FixedPointIteration(rtol=1e-11, max_steps=5000),
]


def linear_problem(rho: float, kind: str = "random", d: int = 8, batch: int = 4):
    cell = LinearCell(scaled_matrix(d, rho, kind=kind))
    x = randn(batch, 3)
    return gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)


@pytest.mark.parametrize("kind", ["random", "symmetric", "nonnormal", "rotation"])
@pytest.mark.parametrize("solver", ITERATIVE, ids=lambda s: repr(s)[:40])
def test_every_solver_agrees_with_dense(kind, solver):
    if kind == "nonnormal" and isinstance(solver, gs.solvers.GMRES) and solver.restart < 8:
        pytest.skip(
            "restarted GMRES stagnates on this system (as scipy's does): see the stagnation test"
        )
    problem = linear_problem(0.9, kind)
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(*problem.h_star.shape, seed=5)
    ref = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.Dense())
    sol = gs.solvers.linear_solve((JT.identity() - JT), b, solver, per_sample=True)
    assert ref.converged and sol.converged, sol
    assert sol.residual <= 1e-11
    # The certificate is the true residual, recomputed with the dense A = I − Wᵀ (rows:
    # x ↦ x − xW) per sample, or over the whole batch where the solver ran on it. Slack:
    # two ways of forming b − Ax differ by rounding, ~n·eps·‖A‖‖x‖/‖b‖ (3e-14 measured).
    W = problem.params["W"]
    A = torch.eye(W.shape[0], dtype=DT) - W.T
    rows = 1 if solver.per_sample is False else b.shape[0]  # linear_solve got per_sample=True
    r = (b - sol.value @ A.T).reshape(rows, -1)
    x, rhs = sol.value.reshape(rows, -1), b.reshape(rows, -1)
    true = r.norm(dim=1) / rhs.norm(dim=1)
    eps_A = 8 * W.shape[0] * torch.finfo(DT).eps * torch.linalg.matrix_norm(A, 2)
    slack = eps_A * x.norm(dim=1) / rhs.norm(dim=1)
    assert sol.residual_per_sample.shape == true.shape
    assert bool(((sol.residual_per_sample - true).abs() <= 1e-6 * true + slack).all())
    assert bool((true <= solver.rtol + slack).all()), true
    assert torch.allclose(sol.value, ref.value, rtol=1e-8, atol=1e-9)
    assert sol.matvecs >= sol.steps and sol.trace.shape[0] == sol.steps


def test_restarted_gmres_stagnation_is_reported_not_hidden():
    # A strongly non-normal system (cond ≈ 1e4) on which GMRES(m < 7) stagnates, as scipy's
    # gmres does too (measured: relative residual 0.02–0.2 after 2000 restarts).
    problem = linear_problem(0.9, "nonnormal")
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(*problem.h_star.shape, seed=5)
    with pytest.warns(gs.ConvergenceWarning, match=r"did not converge.*raise restart \(now 4 "):
        sol = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-11, restart=4, max_steps=400))
    assert not sol.converged and sol.residual > 1e-3
    assert gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-11, restart=8)).converged


@pytest.mark.parametrize(
    "solver",
    [gs.solvers.GMRES(restart=200, max_steps=400), gs.solvers.GMRES(max_steps=400), gs.solvers.BiCGSTAB(max_steps=400)],
    ids=["GMRES(200)", "GMRES(60)", "BiCGSTAB"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numerically_singular_system_returns_the_best_iterate(solver, dtype):
    # I − J with J = 0.9 I + 0.5 N (N the shift): cond ≈ 5^200, singular to working
    # precision. Before the best-iterate guard GMRES(200) returned a true residual of
    # 4e9 and BiCGSTAB 5e37 (inf in float32). Now: finite, never worse than x0 = 0.
    d = 200
    J = 0.9 * torch.eye(d, dtype=DT) + 0.5 * torch.diag(torch.ones(d - 1, dtype=DT), 1)
    A = (torch.eye(d, dtype=DT) - J).to(dtype)
    b = randn(3, d, seed=11).to(dtype)
    op = gs.operators.FunctionOperator(lambda v: v @ A.T, b, "I − J", independent_samples=True)
    with pytest.warns(gs.ConvergenceWarning, match="did not converge"):
        sol = gs.solvers.linear_solve(op, b, solver, per_sample=True)
    assert not sol.converged
    assert bool(torch.isfinite(sol.value).all())
    assert sol.residual <= 1.0 + 1e-6
    true = (b - op(sol.value)).norm(dim=1) / b.norm(dim=1)
    assert torch.allclose(true.to(DT), sol.residual_per_sample.to(DT), rtol=1e-4, atol=1e-6)


def test_per_sample_and_whole_agree_and_dense_modes_agree():
    problem = linear_problem(0.95, "random", d=6, batch=5)
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(5, 6, seed=9)
    per = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-12, per_sample=True))
    whole = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-12, per_sample=False))
    assert per.residual_per_sample.shape == (5,) and whole.residual_per_sample.shape == (1,)
    assert torch.allclose(per.value, whole.value, rtol=1e-9, atol=1e-10)
    d1 = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.Dense(per_sample=True))
    d2 = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.Dense(per_sample=False))
    assert d1.matvecs == 6 + 1 and d2.matvecs == 30 + 1
    assert torch.allclose(d1.value, d2.value, atol=1e-12)


def test_per_sample_stops_each_sample_on_its_own():
    # Sample 0 is easy (b in a 1-D invariant subspace); the others need many steps.
    problem = linear_problem(0.9, "symmetric", d=10, batch=3)
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(3, 10, seed=1)
    sol = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-10, per_sample=True))
    assert sol.converged
    assert (sol.residual_per_sample <= 1e-10).all()


def test_fixed_point_iteration_warns_when_rho_above_one_never_nan():
    problem = linear_problem(1.3, "symmetric")
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(*problem.h_star.shape, seed=2)
    with pytest.warns(
        gs.ConvergenceWarning, match="FixedPointIteration on I − Jᵀ diverged"
    ):
        sol = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.FixedPointIteration(max_steps=3000))
    assert not sol.converged and torch.isfinite(sol.value).all() and sol.residual < float("inf")
    # GMRES converges on the same system: I − Jᵀ is non-singular
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-10))
    assert good.converged


def test_strict_raises_and_budget_exhaustion_reported():
    problem = linear_problem(0.99, "random", d=30, batch=2)
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(2, 30, seed=4)
    with pytest.raises(gs.ConvergenceError, match="did not converge"):
        gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(max_steps=3, strict=True))
    with pytest.warns(gs.ConvergenceWarning):
        sol = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.BiCGSTAB(max_steps=2))
    assert not sol.converged and sol.steps == 2


def test_zero_rhs_and_x0():
    problem = linear_problem(0.5)
    JT = gs.operators.jacobian_transpose(problem)
    zero = torch.zeros_like(problem.h_star)
    for solver in (gs.solvers.GMRES(), gs.solvers.BiCGSTAB(), gs.solvers.FixedPointIteration(), gs.solvers.Dense()):
        sol = gs.solvers.linear_solve((JT.identity() - JT), zero, solver)
        assert sol.converged and torch.equal(sol.value, zero)
    b = randn(*zero.shape, seed=8)
    ref = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.Dense())
    warm = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-12), x0=ref.value)
    assert warm.converged and warm.steps <= 1


def test_float32_tolerance():
    cell = TanhCell(d=16, n=4, scale=0.9).float()
    x = randn(4, 4).float()
    fp = gs.find_fixed_point(cell, x, rtol=1e-6)
    problem = gs.FixedPointProblem.from_module(cell, fp.value, x)
    JT = gs.operators.jacobian_transpose(problem)
    b = randn(4, 16, seed=6).float()
    sol = gs.solvers.linear_solve((JT.identity() - JT), b, gs.solvers.GMRES(rtol=1e-5))
    assert sol.converged and sol.value.dtype == torch.float32


def test_solver_validation():
    with pytest.raises(ValueError, match="GMRES: rtol=0"):
        gs.solvers.GMRES(rtol=0)
    with pytest.raises(ValueError, match="restart"):
        gs.solvers.GMRES(restart=0)
    with pytest.raises(TypeError, match="max_steps"):
        gs.solvers.BiCGSTAB(max_steps=2.5)
    with pytest.raises(TypeError, match="expected gradscope.solvers.GMRES"):
        gs.Exact(solver="gmres")
    problem = linear_problem(0.5)
    JT = gs.operators.jacobian_transpose(problem)
    with pytest.raises(ValueError, match="b has shape"):
        gs.solvers.linear_solve((JT.identity() - JT), torch.zeros(3, dtype=DT))
    with pytest.raises(TypeError, match="expected a gradscope.operators.LinearOperator"):
        gs.solvers.linear_solve(lambda v: v, torch.zeros(3, dtype=DT))


def test_tanh_cell_solvers_report_costs():
    problem = solved_problem(TanhCell(d=12, n=4, scale=0.9), randn(6, 4))
    g = randn(6, 12, seed=3)
    ref = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense()))
    for solver in ITERATIVE:
        est = gs.estimate_gradient(problem, g, gs.Exact(solver))
        assert est.solution.converged
        assert est.cost.vjps == est.solution.matvecs + 1  # + one F_θᵀ u
        assert gs.compare(est, ref).relative_error < 1e-9


def test_tf32_hint_names_the_cause_of_float32_cuda_stalls():
    from gradscope._checks import tf32_hint

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32, cudnn.allow_tf32 = False, True
        assert "TF32 is enabled" in tf32_hint(True, torch.float32)
        assert tf32_hint(True, torch.float64) == "" and tf32_hint(False, torch.float32) == ""
        cudnn.allow_tf32 = False
        assert tf32_hint(True, torch.float32) == ""
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@pytest.mark.parametrize("solver", [gs.solvers.GMRES, gs.solvers.BiCGSTAB, gs.solvers.Dense, gs.solvers.FixedPointIteration])
def test_flags_must_be_bools_not_truthy_strings(solver):
    # a truthy string used to switch strict mode on
    with pytest.raises(TypeError, match=rf"gradscope.{solver.__name__}: strict='no' is a str; expected True or False"):
        solver(strict="no")
    with pytest.raises(TypeError, match="per_sample='yes' is a str"):
        solver(per_sample="yes")


def test_linear_solve_bad_inputs_get_the_call_s_message():
    A = gs.operators.FunctionOperator(lambda v: 2 * v, torch.zeros(3, dtype=DT), "2I")
    b = torch.ones(3, dtype=DT)
    cases = [
        (TypeError, r"linear_solve: b is a list; expected a torch.Tensor", dict(b=[1.0, 2.0, 3.0])),
        (ValueError, r"linear_solve: x0 has shape \(2,\); expected the shape of b", dict(x0=torch.zeros(2, dtype=DT))),
        (TypeError, r"linear_solve: b has dtype torch.float32 but A \(its vectors\) has torch.float64", dict(b=torch.ones(3))),
        (TypeError, r"linear_solve: solver='gmres'", dict(solver="gmres")),
    ]
    for kind, pattern, override in cases:
        args = {"b": b, "solver": None, **override}
        x0 = args.pop("x0", None)
        with pytest.raises(kind, match=pattern):
            gs.solvers.linear_solve(A, args["b"], args["solver"], x0=x0)
