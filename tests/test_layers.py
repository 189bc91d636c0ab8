"""ImplicitLayer: its gradients equal gradscope's estimators, and it trains on digits."""

from __future__ import annotations

import cases
import pytest
import torch
from cases import global_seed, seeded_linear_

import gradscope as gs
from gradscope._memory import GraphMeter

F64 = torch.float64


def _setup(seed: int = 0, d: int = 6, batch: int = 4):
    gen = torch.Generator().manual_seed(seed)
    cell = gs.synthetic.TanhCell(d, spectral_norm=0.9, generator=gen).double()
    x = torch.randn(batch, d, generator=gen, dtype=F64, requires_grad=True)
    g = torch.randn(batch, d, generator=gen, dtype=F64)
    return cell, x, g


ESTIMATORS = [
    gs.Exact(gs.solvers.Dense()),
    gs.Exact(gs.solvers.GMRES(rtol=1e-12)),
    gs.Neumann(5, 0.5),
    gs.Neumann(3, 1.0),
    gs.Unrolled(5, 0.5),
    gs.Unrolled(1, 1.0),
    gs.OneStep(),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: e.name)
def test_layer_gradient_equals_library_estimator(estimator):
    cell, x, g = _setup()
    layer = gs.ImplicitLayer(cell, estimator, gs.layers.ForwardSolver(rtol=1e-13, max_steps=200))
    out = layer(x, h0=torch.zeros_like(x))
    out.backward(g)
    assert layer.last_forward.converged
    problem = gs.FixedPointProblem.from_module(cell, layer.last_forward.value, x.detach())
    reference = gs.estimate_gradient(problem, g, estimator)
    for name, p in cell.named_parameters():
        torch.testing.assert_close(p.grad, reference.grads[name], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(x.grad, reference.input_grads[0], rtol=1e-12, atol=1e-14)


def test_layer_exact_gradient_matches_closed_form_of_a_linear_cell():
    # F(h, x) = W h + x: h* = (I − W)⁻¹ x, so for ℓ = ⟨g, h*⟩: ∇_x ℓ = (I − W)⁻ᵀ g and
    # ∇_W ℓ = u h*ᵀ with u = (I − Wᵀ)⁻¹ g.
    gen = torch.Generator().manual_seed(1)
    d = 5
    cell = seeded_linear_(torch.nn.Linear(d, d, bias=False), gen).double()
    with torch.no_grad():
        cell.weight.mul_(0.6 / torch.linalg.matrix_norm(cell.weight, ord=2))

    class Affine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = cell

        def forward(self, h, x):
            return self.lin(h) + x

    x = torch.randn(d, generator=gen, dtype=F64, requires_grad=True)
    g = torch.randn(d, generator=gen, dtype=F64)
    layer = gs.ImplicitLayer(Affine(), gs.Exact(gs.solvers.GMRES(rtol=1e-13)), gs.layers.ForwardSolver(rtol=1e-14))
    layer(x, h0=torch.zeros(d, dtype=F64)).backward(g)
    eye = torch.eye(d, dtype=F64)
    W = cell.weight.detach()
    h_star = torch.linalg.solve(eye - W, x.detach())
    u = torch.linalg.solve(eye - W.T, g)
    torch.testing.assert_close(x.grad, u, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cell.weight.grad, torch.outer(u, h_star), rtol=1e-10, atol=1e-12)
    assert layer.last_backward.solution.converged


class CoupledCell(torch.nn.Module):
    """F(h, x) = tanh(0.5 BN(W h) + x): BatchNorm in train mode couples the samples."""

    def __init__(self, generator, d=5):
        super().__init__()
        self.W = seeded_linear_(torch.nn.Linear(d, d, bias=False), generator)
        self.bn = torch.nn.BatchNorm1d(d)

    def forward(self, h, x):
        return torch.tanh(0.5 * self.bn(self.W(h)) + x)


def test_exact_backward_of_a_cell_coupling_the_samples():
    gen = torch.Generator().manual_seed(0)
    cell = CoupledCell(gen).double()
    x = torch.randn(6, 5, generator=gen, dtype=F64, requires_grad=True)
    g = torch.randn(6, 5, generator=gen, dtype=F64)
    layer = gs.ImplicitLayer(
        cell,
        gs.Exact(gs.solvers.GMRES(rtol=1e-12)),
        gs.layers.ForwardSolver(rtol=1e-13, max_steps=300, per_sample=False),  # coupled: one Anderson
    )
    layer(x, h0=torch.zeros_like(x)).backward(g)
    assert layer.last_forward.converged
    # probed: a per-sample solve would be wrong, so the solve ran on the whole batch
    assert layer.last_backward.solution.residual_per_sample.numel() == 1
    problem = gs.FixedPointProblem.from_module(cell, layer.last_forward.value, x.detach())
    assert not problem.samples_independent
    dense = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense(per_sample=False)))
    for name, p in cell.named_parameters():
        torch.testing.assert_close(p.grad, dense.grads[name], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(x.grad, dense.input_grads[0], rtol=1e-9, atol=1e-11)


def _graph_bytes(estimator, d=32, batch=16):
    gen = torch.Generator().manual_seed(0)
    cell = gs.synthetic.TanhCell(d, 0.8, generator=gen)
    layer = gs.ImplicitLayer(cell, estimator)
    x = torch.randn(batch, d, generator=gen)
    meter = GraphMeter()
    with meter.hooks():
        out = layer(x, h0=torch.zeros_like(x))
    out.sum().backward()
    return meter.bytes


def test_neumann_memory_is_one_graph_unrolled_grows():
    neumann = [_graph_bytes(gs.Neumann(k, 0.5)) for k in (1, 5, 20)]
    unrolled = [_graph_bytes(gs.Unrolled(k, 0.5)) for k in (1, 5, 20)]
    assert neumann[0] == neumann[1] == neumann[2] > 0
    assert unrolled[0] < unrolled[1] < unrolled[2]
    assert unrolled[2] > 10 * neumann[2]


def test_no_grad_returns_the_equilibrium_and_stats_are_recorded():
    cell, x, _ = _setup()
    layer = gs.ImplicitLayer(cell, gs.Neumann(4, 0.5), gs.layers.ForwardSolver(rtol=1e-10))
    with torch.no_grad():
        h = layer(x, h0=torch.zeros_like(x))
    assert not h.requires_grad
    assert layer.last_forward.converged and layer.last_forward.residual <= 1e-10
    torch.testing.assert_close(cell(h, x), h, rtol=1e-8, atol=1e-9)
    out = layer(x, h0=torch.zeros_like(x))
    out.sum().backward()
    assert layer.last_backward.vjps == 4 and layer.last_backward.estimator == "Neumann(4, 0.5)"


def test_float32_exact_backward_reports_its_solve():
    gen = torch.Generator().manual_seed(0)
    cell = gs.synthetic.TanhCell(8, 0.8, generator=gen)
    layer = gs.ImplicitLayer(cell, gs.Exact(gs.solvers.GMRES(rtol=1e-5)))
    x = torch.randn(3, 8, generator=gen)
    layer(x, h0=torch.zeros_like(x)).square().sum().backward()
    solution = layer.last_backward.solution
    assert solution.converged and solution.residual <= 1e-5
    assert cell.W.weight.grad.dtype == torch.float32


def test_exact_backward_failure_warns_and_is_recorded():
    # ρ(J) ≈ 1.5: Richardson (fixed-point) iteration on (I − Jᵀ)u = g diverges.
    d = 4

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W = torch.nn.Parameter(-1.5 * torch.eye(d, dtype=F64))

        def forward(self, h, x):
            return h @ self.W.T + x

    layer = gs.ImplicitLayer(
        Linear(), gs.Exact(gs.solvers.FixedPointIteration(max_steps=20)), gs.layers.ForwardSolver(rtol=1e-12)
    )
    x = torch.randn(2, d, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = layer(x, h0=torch.zeros_like(x))
    with pytest.warns(gs.ConvergenceWarning):
        out.sum().backward()
    assert not layer.last_backward.solution.converged


def test_bad_arguments_raise_with_the_fix():
    with pytest.raises(TypeError, match=r"gradscope\.ImplicitLayer: cell"):
        gs.ImplicitLayer(lambda h: h)
    with pytest.raises(TypeError, match="estimator"):
        gs.ImplicitLayer(gs.synthetic.TanhCell(2), estimator="neumann")
    with pytest.raises(ValueError, match="rtol"):
        gs.layers.ForwardSolver(rtol=0.0)


def _train(estimator, steps=40, seed=0):
    data = gs.demo.load_digits_tensors(seed=0)
    with global_seed(seed):  # DigitsDEQ takes no generator
        model = gs.demo.DigitsDEQ(width=32, estimator=estimator)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(data.y_train), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        test_loss = torch.nn.functional.cross_entropy(model(data.x_test), data.y_test).item()
    return losses, test_loss


@pytest.mark.parametrize(
    "estimator", [gs.Neumann(5, 0.5), gs.Exact(gs.solvers.GMRES(rtol=1e-5))], ids=lambda e: e.name
)
def test_training_on_digits_reduces_the_loss(estimator):
    pytest.importorskip("sklearn")
    losses, test_loss = _train(estimator)
    assert losses[0] > 2.0  # ≈ ln 10 at initialisation
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    assert test_loss < 0.6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_on_cuda_matches_cpu(dtype):
    gen = torch.Generator().manual_seed(0)
    cell = gs.synthetic.TanhCell(8, 0.8, generator=gen).to(dtype)
    x = torch.randn(4, 8, generator=gen, dtype=dtype)
    g = torch.randn(4, 8, generator=gen, dtype=dtype)
    grads = []
    for device in ("cpu", "cuda"):
        c = gs.synthetic.TanhCell(8, 0.8).to(dtype=dtype, device=device)
        c.load_state_dict(cell.state_dict())
        layer = gs.ImplicitLayer(c, gs.Exact(gs.solvers.GMRES(rtol=1e-5)))
        xd = x.to(device)
        layer(xd, h0=torch.zeros_like(xd)).backward(g.to(device))
        grads.append(c.W.weight.grad.cpu())
    tol = 1e-3 if dtype == torch.float32 else 1e-8
    torch.testing.assert_close(grads[0], grads[1], rtol=tol, atol=tol)


def test_layer_forward_errors_name_the_layer_and_keep_f_s_own_error():
    layer = gs.ImplicitLayer(cases.TanhCell(d=4, n=4))  # float64 cell; state shaped like the input
    with pytest.raises(ValueError, match=r"gradscope\.ImplicitLayer: the forward solve refused: .*(Float|Double|dtype)"):
        layer(torch.ones(2, 4, dtype=torch.float32))
