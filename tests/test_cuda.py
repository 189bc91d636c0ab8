"""The same answers on CUDA as on the CPU (skipped without a GPU; run on the device machine)."""

import pytest
import torch
from cases import DT, TanhCell, randn, solved_problem

import gradscope as gs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize(
    "solver",
    [
        gs.solvers.GMRES(rtol=1e-11),
        gs.solvers.GMRES(rtol=1e-11, per_sample=False, restart=5),
        gs.solvers.BiCGSTAB(rtol=1e-11),
        gs.solvers.FixedPointIteration(rtol=1e-11),
        gs.solvers.Dense(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_exact_gradient_on_cuda_matches_cpu(solver):
    problem = solved_problem(TanhCell(d=12, n=4, scale=0.9), randn(6, 4))
    g = randn(6, 12, seed=3)
    cpu = gs.estimate_gradient(problem, g, gs.Exact(solver))
    dev = torch.device("cuda")
    on_gpu = gs.FixedPointProblem.from_function(
        problem.fn,
        {n: p.to(dev) for n, p in problem.params.items()},
        problem.h_star.to(dev),
        *(x.to(dev) for x in problem.inputs),
    )
    gpu = gs.estimate_gradient(on_gpu, g.to(dev), gs.Exact(solver))
    assert gpu.solution.converged and gpu.cost.peak_cuda_bytes > 0
    for name, value in cpu.grads.items():
        assert torch.allclose(gpu.grads[name].cpu(), value, rtol=1e-8, atol=1e-10), name


@cuda
@pytest.mark.parametrize(
    "estimator", [gs.Neumann(5, 0.5), gs.Unrolled(5, 0.5), gs.OneStep()], ids=lambda e: e.name
)
def test_phantoms_and_theory_on_cuda(estimator):
    problem = solved_problem(TanhCell(d=10, n=4, scale=0.8), randn(4, 4))
    dev = torch.device("cuda")
    on_gpu = gs.FixedPointProblem.from_function(
        problem.fn,
        {n: p.to(dev) for n, p in problem.params.items()},
        problem.h_star.to(dev),
        *(x.to(dev) for x in problem.inputs),
    )
    g = randn(4, 10, seed=1)
    cpu = gs.estimate_gradient(problem, g, estimator)
    gpu = gs.estimate_gradient(on_gpu, g.to(dev), estimator)
    assert (
        gs.compare(
            gs.estimators.GradientEstimate.from_grads({n: v.cpu() for n, v in gpu.grads.items()}), cpu
        ).relative_error
        < 1e-12
    )
    rho_cpu, rho_gpu = gs.spectral_radius(problem), gs.spectral_radius(on_gpu)
    assert abs(rho_cpu.value - rho_gpu.value) < 1e-8
    report = gs.check_theory(on_gpu, estimator, g.to(dev))
    assert "Theorem 1" in str(report)


@cuda
def test_float32_forward_and_adjoint_on_cuda_reach_the_dtype_tolerance():
    cell = TanhCell(d=64, n=8, scale=0.9).float().cuda()
    x = randn(32, 8).float().cuda()
    fp = gs.find_fixed_point(cell, x, rtol=1e-5, max_steps=200)
    assert fp.converged
    problem = gs.FixedPointProblem.from_module(cell, fp.value, x)
    est = gs.estimate_gradient(problem, randn(32, 64, seed=1).float().cuda(), gs.Exact())
    assert est.solution.converged and est.solution.solver.rtol == 1e-5
    assert DT == torch.float64  # the module's cases stay float64 on the CPU


@cuda
def test_a_monitored_cuda_step_leaves_the_cuda_rng_and_the_gradient_alone():
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(16, 0.8, generator=generator).cuda(), gs.Neumann(5, 0.5))
    draws = []
    monitor = gs.GradientMonitor(
        schedule=gs.monitor.Every(1),
        extra=lambda *_: {"draw": draws.append(torch.rand((), device="cuda")) or 0.0},
    )
    monitor.attach(layer)
    x = torch.randn(6, 16, generator=generator).cuda()
    out = layer(x, h0=torch.zeros_like(x))
    cuda_rng, cpu_rng = torch.cuda.get_rng_state(), torch.get_rng_state()
    out.sum().backward()
    assert monitor.observations == 1 and monitor.errors == 0 and len(draws) == 1
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert torch.equal(torch.get_rng_state(), cpu_rng)
    grads = {n: p.grad.clone() for n, p in layer.cell.named_parameters()}
    layer.cell.zero_grad()
    monitor.detach()
    layer(x, h0=torch.zeros_like(x)).sum().backward()
    for n, p in layer.cell.named_parameters():
        assert torch.equal(p.grad, grads[n]), n


@cuda
@pytest.mark.slow
def test_demo_runs_on_cuda(tmp_path):
    import json

    from gradscope.cli import main

    argv = ["demo", "--quick", "--steps", "8", "--every", "4", "--device", "cuda"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 8 and (tmp_path / "metrics.csv").exists()
