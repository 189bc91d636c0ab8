import pytest
import torch
from cases import DT, LinearCell, TanhCell, randn, scaled_matrix, seeded_linear_, solved_problem
from torch import nn

import gradscope as gs


def test_residual_and_from_module_names():
    cell = TanhCell(d=5, n=3)
    x = randn(4, 3)
    problem = solved_problem(cell, x)
    assert problem.param_names == ["W.weight", "U.weight", "U.bias"]
    assert problem.residual.max_relative < 1e-12
    assert problem.residual.relative.shape == (4,)
    fh = cell(problem.h_star, x)
    assert torch.allclose(problem.residual.absolute, (fh - problem.h_star).norm(dim=1))


def test_inexact_equilibrium_warns_and_reports():
    cell = TanhCell(d=5, n=3)
    x = randn(4, 3)
    with pytest.warns(gs.FixedPointWarning, match="not a fixed point"):
        problem = gs.FixedPointProblem.from_module(cell, torch.zeros(4, 5, dtype=DT), x)
    assert problem.residual.max_relative > 0.5
    # a looser tolerance silences it
    gs.FixedPointProblem.from_module(cell, torch.zeros(4, 5, dtype=DT), x, rtol=10.0)


def test_from_function_and_subset_of_params():
    W = scaled_matrix(3, 0.5)
    fn = lambda p, h, x: h @ p["W"].T + x
    x = randn(2, 3)
    h = torch.linalg.solve(torch.eye(3, dtype=DT) - W, x.T).T
    problem = gs.FixedPointProblem.from_function(fn, {"W": W}, h, x)
    assert problem.param_names == ["W"] and problem.residual.max_relative < 1e-12
    cell = TanhCell(d=5, n=3)
    p2 = gs.FixedPointProblem.from_module(
        cell, solved_problem(cell, randn(2, 3)).h_star, randn(2, 3), params=["U.bias"], rtol=1e3
    )
    assert p2.param_names == ["U.bias"]


def test_module_is_not_modified_batchnorm_buffers_and_grads():
    class BNCell(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = seeded_linear_(nn.Linear(4, 4), torch.Generator().manual_seed(0))
            self.bn = nn.BatchNorm1d(4)

        def forward(self, h, x):
            return 0.3 * torch.tanh(self.bn(self.lin(h))) + x

    cell = BNCell().double().train()
    x = randn(6, 4)
    before = {n: b.clone() for n, b in cell.named_buffers()}
    problem = gs.FixedPointProblem.from_module(cell, torch.zeros(6, 4, dtype=DT), x, rtol=1e3)
    # BatchNorm in train mode couples the samples: detected
    assert problem.samples_independent is False
    est = gs.estimate_gradient(problem, torch.ones(6, 4, dtype=DT), gs.Exact(gs.solvers.GMRES(rtol=1e-6)))
    assert est.solution is not None
    for n, b in cell.named_buffers():
        assert torch.equal(b, before[n]), n
    assert all(p.grad is None for p in cell.parameters())
    assert cell.training
    with pytest.raises(ValueError, match="couples the samples"):
        gs.estimate_gradient(
            problem, torch.ones(6, 4, dtype=DT), gs.Exact(gs.solvers.GMRES(per_sample=True))
        )


def test_samples_independent_true_for_rowwise_cell():
    cell = TanhCell(d=5, n=3)
    assert solved_problem(cell, randn(4, 3)).samples_independent


# ---------------------------------------------------------------------------- bad input
@pytest.fixture
def setup():
    cell = TanhCell(d=5, n=3)
    x = randn(4, 3)
    return cell, x, solved_problem(cell, x)


def test_bad_module_output_shape():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = seeded_linear_(nn.Linear(5, 3), torch.Generator().manual_seed(0))

        def forward(self, h, x):
            return self.lin(h)

    with pytest.raises(
        ValueError,
        match=r"FixedPointProblem.from_module: F returned shape \(4, 3\).*expected the same shape",
    ):
        gs.FixedPointProblem.from_module(Bad().double(), torch.zeros(4, 5, dtype=DT), randn(4, 3))


def test_bad_inputs_shape(setup):
    cell, x, problem = setup
    with pytest.raises(ValueError, match="calling F with h\\* of shape .* failed"):
        gs.FixedPointProblem.from_module(cell, problem.h_star, randn(4, 7))


def test_bad_params(setup):
    cell, x, problem = setup
    with pytest.raises(ValueError, match="'nope' does not exist"):
        gs.FixedPointProblem.from_module(cell, problem.h_star, x, params=["nope"])
    cell.U.bias.requires_grad_(False)
    with pytest.raises(ValueError, match="does not require grad"):
        gs.FixedPointProblem.from_module(cell, problem.h_star, x, params=["U.bias"])


def test_bad_dtypes_and_devices(setup):
    cell, x, problem = setup
    with pytest.raises(TypeError, match="floating dtype"):
        gs.FixedPointProblem.from_module(cell, torch.zeros(4, 5, dtype=torch.int64), x)
    with pytest.raises(TypeError, match="expected one dtype"):
        gs.FixedPointProblem.from_module(cell, problem.h_star.float(), x)
    with pytest.raises(ValueError, match="inf or NaN"):
        gs.FixedPointProblem.from_module(cell, problem.h_star * float("nan"), x)
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        gs.FixedPointProblem.from_module(lambda h, x: h, problem.h_star, x)
    with pytest.raises(ValueError, match="rtol"):
        gs.FixedPointProblem.from_module(cell, problem.h_star, x, rtol=0.0)
    # Mixed devices, checkable on any machine: the meta device holds no data.
    with pytest.raises(ValueError, match="inputs\\[0\\] is on meta but h_star is on cpu"):
        gs.FixedPointProblem.from_module(cell, problem.h_star, x.to("meta"))
    with pytest.raises(ValueError, match="one device"):
        gs.find_fixed_point(cell, x.to("meta"), h0=problem.h_star)
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        with pytest.raises(ValueError, match="one device"):
            gs.FixedPointProblem.from_module(cell, problem.h_star, x.cuda())


def test_bad_cotangent(setup):
    cell, x, problem = setup
    with pytest.raises(
        ValueError, match=r"cotangent has shape \(3, 5\); expected the shape of h\*"
    ):
        gs.estimate_gradient(problem, torch.zeros(3, 5, dtype=DT))
    with pytest.raises(TypeError, match="expected one dtype"):
        gs.estimate_gradient(problem, torch.zeros(4, 5))
    with pytest.raises(TypeError, match="cotangent is a list"):
        gs.estimate_gradient(problem, [0.0])
    with pytest.raises(ValueError, match="inf or NaN"):
        gs.estimate_gradient(problem, torch.full((4, 5), float("inf"), dtype=DT))
    with pytest.raises(TypeError, match="expected gradscope.Exact"):
        gs.estimate_gradient(problem, torch.zeros(4, 5, dtype=DT), "exact")


def test_linear_cell_helper_is_a_fixed_point():
    cell = LinearCell(scaled_matrix(4, 0.9))
    x = randn(3, 3)
    problem = gs.FixedPointProblem.from_module(cell, cell.equilibrium(x), x)
    assert problem.residual.max_relative < 1e-12


def test_non_finite_parameters_and_inputs_are_refused_at_the_call():
    W = torch.eye(2, dtype=torch.float64) * 0.5
    fn = lambda p, h, x: p["W"] @ h + x
    x = torch.ones(2, dtype=torch.float64)
    h = torch.full((2,), 2.0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"FixedPointProblem.from_function: params\['W'\] contains inf or NaN"):
        gs.FixedPointProblem.from_function(fn, {"W": W * float("nan")}, h, x)
    with pytest.raises(ValueError, match=r"inputs\[0\] contains inf or NaN"):
        gs.FixedPointProblem.from_function(fn, {"W": W}, h, x * float("inf"))


def test_a_map_that_returns_nan_is_not_a_fixed_point():
    fn = lambda p, h: p["W"] @ h * float("nan")
    W = torch.eye(2, dtype=torch.float64)
    with pytest.warns(gs.FixedPointWarning, match="not a fixed point"):
        problem = gs.FixedPointProblem.from_function(fn, {"W": W}, torch.ones(2, dtype=torch.float64))
    assert not problem.converged


def test_float32_residual_does_not_overflow_to_nan():
    h = torch.full((3, 8), 3e20, dtype=torch.float32)
    fn = lambda p, h: p["a"] * h
    problem = gs.FixedPointProblem.from_function(fn, {"a": torch.tensor(1.0)}, h)
    assert problem.converged and problem.residual.max_relative == 0.0
    with pytest.warns(gs.FixedPointWarning):
        off = gs.FixedPointProblem.from_function(fn, {"a": torch.tensor(1.5)}, h)
    assert abs(off.residual.max_relative - 1 / 3) < 1e-6  # was NaN: the squared norm overflowed


def test_batchnorm_in_train_mode_works_through_forward_mode_products():
    # num_batches_tracked += 1 inside torch.func.jvp used to raise ("mutate a captured
    # Tensor") in J v, spectral_norm, check_theory and the spectral extras
    torch.manual_seed(0)

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.bn = torch.nn.BatchNorm1d(4)

        def forward(self, h, x):
            return torch.tanh(self.bn(0.3 * self.lin(h)) + x)

    cell = Cell().double().train()
    before = {n: b.clone() for n, b in cell.named_buffers()}
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fp = gs.find_fixed_point(cell, x, h0=torch.zeros(8, 4, dtype=torch.float64), max_steps=50, warn=False)
    for n, b in cell.named_buffers():  # the forward solve ran the user's module: reset its stats
        b.copy_(before[n])
    # the products are compared with jacrev at the same state: h* need not be exact here
    problem = gs.FixedPointProblem.from_module(cell, fp.value, x, check=False)
    assert not problem.samples_independent  # BatchNorm couples the samples
    J = torch.func.jacrev(lambda h: problem.fn(problem.params, h, *problem.inputs))(problem.h_star).reshape(32, 32)
    v = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    Jv = gs.operators.jacobian_transpose(problem).T(v)
    torch.testing.assert_close(Jv.reshape(-1), J @ v.reshape(-1), rtol=1e-12, atol=1e-12)
    norm = gs.spectral.spectral_norm(problem)
    assert abs(norm.value - float(torch.linalg.matrix_norm(J, 2))) < 1e-8 * norm.value
    smin = gs.spectral.smallest_singular_value(problem, gs.spectral.DenseSpectrum())  # J by JVPs
    eye = torch.eye(32, dtype=torch.float64)
    assert abs(smin.value - float(torch.linalg.svdvals(eye - J).min())) < 1e-10
    for n, b in cell.named_buffers():  # gradscope never touched the user's statistics
        assert torch.equal(b, before[n]), n


def test_a_closure_that_captures_parameters_is_named_not_silent():
    cell = torch.nn.Linear(3, 3).double()
    x = torch.ones(2, 3, dtype=torch.float64)
    fn = lambda p, h: torch.tanh(0.3 * cell(h) + x)  # the closure hides cell's parameters
    fp = gs.find_fixed_point(lambda h: fn({}, h), h0=torch.zeros(2, 3, dtype=torch.float64), rtol=1e-12)
    problem = gs.FixedPointProblem.from_function(fn, {}, fp.value)
    with pytest.warns(gs.CapturedTensorWarning, match=r"2 tensor\(s\) that require grad .*\(3, 3\)"):
        gs.estimate_gradient(problem, torch.ones(2, 3, dtype=torch.float64), gs.OneStep())
    # leaving some of a module's parameters out on purpose is not a capture
    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = cell

        def forward(self, h, x):
            return torch.tanh(0.3 * self.lin(h) + x)

    chosen = gs.FixedPointProblem.from_module(Cell(), fp.value, x, params=["lin.weight"])
    gs.estimate_gradient(chosen, torch.ones(2, 3, dtype=torch.float64), gs.OneStep())  # no warning
