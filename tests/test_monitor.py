"""GradientMonitor: schedule, records, sinks, failures, and that it never changes training."""

from __future__ import annotations

import gc
import logging

import pytest
import torch
from cases import global_seed, seeded_linear_
from torch import nn

import gradscope as gs

F64 = torch.float64


class Net(nn.Module):
    """Projection → BatchNorm → implicit layer → dropout → head: buffers and RNG in play."""

    def __init__(self, generator, estimator=None, width=16):
        super().__init__()
        self.project = seeded_linear_(nn.Linear(64, width), generator)
        self.norm = nn.BatchNorm1d(width)
        self.layer = gs.ImplicitLayer(gs.synthetic.TanhCell(width, 0.7, generator=generator), estimator)
        self.drop = nn.Dropout(0.2)
        self.head = seeded_linear_(nn.Linear(width, 10), generator)

    def forward(self, x):
        z = self.norm(self.project(x))
        return self.head(self.drop(self.layer(z, h0=torch.zeros_like(z))))


def _data(n=256, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 64, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return x, y


def _train(monitor=None, steps=50, seed=0):
    """Train Net; also returns the global RNG state at the end (dropout draws from it)."""
    x, y = _data()
    generator = torch.Generator().manual_seed(seed)
    model = Net(generator)
    if monitor is not None:
        monitor.attach(model.layer, name="deq")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    with global_seed(seed):
        for _ in range(steps):
            idx = torch.randint(0, len(y), (32,), generator=generator)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        rng = torch.get_rng_state()
    return model, opt, losses, rng


def test_training_is_bit_identical_with_and_without_the_monitor():
    def noisy_extra(problem, exact, estimates):
        return {"noise": float(torch.randn(()))}  # consumes the RNG inside the monitor

    monitor = gs.GradientMonitor(schedule=gs.monitor.Every(10), extra=noisy_extra)
    plain_model, plain_opt, plain_losses, plain_rng = _train(None)
    model, opt, losses, rng = _train(monitor)
    assert monitor.observations == 5 and monitor.errors == 0
    assert losses == plain_losses
    for (n, a), (_, b) in zip(plain_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), n
    for a, b in zip(plain_opt.state_dict()["state"].values(), opt.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert torch.equal(rng, plain_rng)


class NormCell(nn.Module):
    """F(h, x) = tanh(BN(W h) + x), a cell with running statistics (train mode)."""

    def __init__(self, generator, d=8):
        super().__init__()
        self.W = seeded_linear_(nn.Linear(d, d, bias=False), generator)
        self.bn = nn.BatchNorm1d(d)
        with torch.no_grad():
            self.W.weight.mul_(0.3)

    def forward(self, h, x):
        return torch.tanh(0.5 * self.bn(self.W(h)) + x)


def test_a_monitored_step_leaves_rng_buffers_flags_and_grads_alone():
    generator = torch.Generator().manual_seed(0)
    cell = NormCell(generator)
    layer = gs.ImplicitLayer(cell, gs.Neumann(5, 0.5))
    draws = []
    monitor = gs.GradientMonitor(
        schedule=gs.monitor.Every(1), extra=lambda *_: {"draw": draws.append(torch.rand(())) or 0.0}
    )
    monitor.attach(layer)
    x = torch.randn(6, 8, generator=generator)
    out = layer(x, h0=torch.zeros_like(x))
    buffers = {n: b.clone() for n, b in cell.named_buffers()}
    rng = torch.get_rng_state()
    out.sum().backward()
    assert monitor.observations == 1 and monitor.errors == 0 and len(draws) == 1
    assert torch.equal(torch.get_rng_state(), rng)
    for n, b in cell.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert cell.training and cell.bn.training
    # The gradient is the layer's own: the same as a step without the monitor.
    grads = {n: p.grad.clone() for n, p in cell.named_parameters()}
    cell.zero_grad()
    monitor.detach()
    layer(x, h0=torch.zeros_like(x)).sum().backward()
    assert monitor.observations == 1
    for n, p in cell.named_parameters():
        assert torch.equal(p.grad, grads[n]), n


def _observed_steps(schedule, steps=20):
    monitor = gs.GradientMonitor(estimators=[gs.OneStep()], schedule=schedule)
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(4, 0.5, generator=generator), gs.OneStep())
    monitor.attach(layer)
    x = torch.randn(3, 4, generator=generator)
    for _ in range(steps):
        layer(x, h0=torch.zeros_like(x)).sum().backward()
    with torch.no_grad():  # not a training step: not counted, not observed
        layer(x, h0=torch.zeros_like(x))
    return sorted({r["step"] for r in monitor.records})


def test_the_schedule_is_respected():
    assert _observed_steps(gs.monitor.Every(6)) == [0, 6, 12, 18]
    assert _observed_steps(gs.monitor.Every(5, start=3)) == [3, 8, 13, 18]
    assert _observed_steps(gs.monitor.LogSpaced(4)) == [0, 1, 2, 3, 6, 10, 18]
    assert _observed_steps(lambda s: s in (4, 7)) == [4, 7]
    with pytest.raises(ValueError, match="n=0"):
        gs.monitor.Every(0)
    with pytest.raises(TypeError, match="schedule"):
        gs.GradientMonitor(schedule=5)


def test_records_hold_the_metrics_asked_for():
    pd = pytest.importorskip("pandas")
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(8, 0.8, generator=generator).double(), gs.Neumann(5, 0.5))
    monitor = gs.GradientMonitor(
        estimators=[gs.Unrolled(5, 0.5), gs.OneStep(), gs.Neumann(5, 0.5)],
        exact=gs.Exact(gs.solvers.GMRES(rtol=1e-10)),
        schedule=gs.monitor.Every(1),
        extra=gs.monitor.spectral_norm_extra(),
    )
    monitor.attach(layer, name="deq")
    x = torch.randn(5, 8, generator=generator, dtype=F64)
    layer(x, h0=torch.zeros_like(x)).square().sum().backward()
    df = monitor.dataframe()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(gs.monitor.COLUMNS)
    overall = df[df.param == "all"]
    for estimator in ("Unrolled(5, 0.5)", "OneStep", "Neumann(5, 0.5)"):
        metrics = set(overall[overall.estimator == estimator].metric)
        assert {
            "cosine",
            "relative_error",
            "absolute_error",
            "inner",
            "norm_ratio",
            "vjps",
        } <= metrics
    # The training estimator is the configured Neumann(5, 0.5): one set of rows, role "training".
    assert set(overall[overall.estimator == "Neumann(5, 0.5)"].role) == {"training"}
    assert set(df[df.param != "all"].param) == {"W.weight"}
    per_param = df[(df.param == "W.weight") & (df.estimator == "OneStep")]
    assert set(per_param.metric) == set(gs.monitor.COMPARISON_METRICS)
    # one parameter tensor: its numbers are the overall ones
    for metric in gs.monitor.COMPARISON_METRICS:
        one = per_param[per_param.metric == metric].value.iloc[0]
        whole = overall[(overall.estimator == "OneStep") & (overall.metric == metric)].value.iloc[0]
        assert one == pytest.approx(whole, rel=1e-10)
    exact = overall[overall.role == "exact"].set_index("metric").value
    assert exact["converged"] == 1.0 and exact["residual"] <= 1e-10
    forward = overall[overall.role == "forward"].set_index("metric").value
    assert forward["residual"] <= 1e-4 and forward["converged"] == 1.0
    # Cross-check the recorded cosine against a direct computation (float64, same g).
    problem = gs.FixedPointProblem.from_module(layer.cell, layer.last_forward.value, x, rtol=1e-3)
    g = 2 * layer.cell(layer.last_forward.value, x).detach()
    reference = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense()))
    cosine = gs.compare(gs.estimate_gradient(problem, g, gs.OneStep()), reference).cosine
    recorded = overall[(overall.estimator == "OneStep") & (overall.metric == "cosine")].value
    assert float(recorded.iloc[0]) == pytest.approx(cosine, abs=1e-8)
    # ‖J‖₂ ≤ ‖W‖₂ = 0.8 for a tanh cell, and is close to it near h = 0.
    norm = float(df[df.metric == "jacobian_norm"].value.iloc[0])
    assert 0.3 < norm <= 0.8 + 1e-9


def test_csv_and_jsonl_round_trip(tmp_path):
    pytest.importorskip("pandas")
    csv_sink, jsonl_sink = gs.monitor.CSVSink(tmp_path / "r.csv"), gs.monitor.JSONLSink(tmp_path / "r.jsonl")
    monitor = gs.GradientMonitor(schedule=gs.monitor.Every(2), sinks=[csv_sink, jsonl_sink])
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(6, 0.6, generator=generator), gs.Unrolled(3, 0.5))
    monitor.attach(layer)
    x = torch.randn(4, 6, generator=generator)
    for _ in range(4):
        layer(x, h0=torch.zeros_like(x)).sum().backward()
    monitor.close()
    df = monitor.dataframe()
    for path in (tmp_path / "r.csv", tmp_path / "r.jsonl"):
        back = gs.monitor.read_records(path)
        assert back[["step", "layer", "role", "estimator", "param", "metric"]].equals(
            df[["step", "layer", "role", "estimator", "param", "metric"]]
        )
        assert (back.value - df.value).abs().max() <= 1e-12 * df.value.abs().max()


def test_tensorboard_sink_is_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[gs.monitor.TensorBoardSink(tmp_path)]
    )
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(4, 0.5, generator=generator), gs.OneStep())
    monitor.attach(layer, name="deq")
    x = torch.randn(3, 4, generator=generator)
    for _ in range(3):
        layer(x, h0=torch.zeros_like(x)).sum().backward()
    monitor.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Scalars("deq/OneStep/cosine")
    assert [e.step for e in scalars] == [0, 1, 2]
    assert all(0.0 < e.value <= 1.0 for e in scalars)


def test_logging_sink(caplog):
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[gs.monitor.LoggingSink()]
    )
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(4, 0.5, generator=generator), gs.OneStep())
    monitor.attach(layer, name="deq")
    x = torch.randn(3, 4, generator=generator)
    with caplog.at_level(logging.INFO, logger="gradscope.monitor"):
        layer(x, h0=torch.zeros_like(x)).sum().backward()
    assert any("OneStep" in r.getMessage() and "cosine=" in r.getMessage() for r in caplog.records)


class Flip(nn.Module):
    """F(h, x) = W h + x with W = −1.5 I: ρ(J) = 1.5, so fixed-point iteration diverges."""

    def __init__(self, generator, d=4):
        super().__init__()
        self.W = nn.Parameter(-1.5 * torch.eye(d) + 0.01 * torch.randn(d, d, generator=generator))

    def forward(self, h, x):
        return h @ self.W.T + x


def test_a_failing_exact_solve_is_recorded_and_training_goes_on(caplog):
    generator = torch.Generator().manual_seed(0)
    # Neumann(5, 0.5) is fine here: B = 1 − 0.5·(1 + 1.5) = −0.25 (docs/explanation/damping.rst, theory-damping).
    layer = gs.ImplicitLayer(Flip(generator), gs.Neumann(5, 0.5), gs.layers.ForwardSolver(rtol=1e-6))
    monitor = gs.GradientMonitor(
        exact=gs.Exact(gs.solvers.FixedPointIteration(max_steps=30)), schedule=gs.monitor.Every(1)
    )
    monitor.attach(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=1e-3)
    x = torch.randn(8, 4, generator=generator)
    with caplog.at_level(logging.WARNING, logger="gradscope.monitor"):
        for _ in range(3):
            loss = layer(x, h0=torch.zeros_like(x)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    df = monitor.dataframe()
    converged = df[(df.role == "exact") & (df.metric == "converged")].value
    assert list(converged) == [0.0, 0.0, 0.0]
    assert "cosine" not in set(df.metric)  # nothing compared with a failed reference
    assert monitor.errors == 0 and monitor.warnings >= 3 and monitor.observations == 3
    assert any("did not converge" in r.getMessage() for r in caplog.records)
    assert torch.isfinite(layer.cell.W).all()


def test_an_exception_in_the_monitor_is_counted_and_training_goes_on():
    def broken(*_):
        raise RuntimeError("boom")

    monitor = gs.GradientMonitor(estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), extra=broken)
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(4, 0.5, generator=generator), gs.OneStep())
    monitor.attach(layer)
    x = torch.randn(3, 4, generator=generator)
    for _ in range(2):
        layer(x, h0=torch.zeros_like(x)).sum().backward()
    assert monitor.errors == 2 and "boom" in monitor.last_error
    assert layer.cell.W.weight.grad is not None
    strict = gs.GradientMonitor(schedule=gs.monitor.Every(1), extra=broken, raise_errors=True)
    strict.attach(layer)
    with pytest.raises(RuntimeError, match="boom"):
        layer(x, h0=torch.zeros_like(x)).sum().backward()


def test_memory_does_not_grow_over_a_long_run():
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep(), gs.Unrolled(2, 0.5)], schedule=gs.monitor.Every(1), keep_records=False
    )
    generator = torch.Generator().manual_seed(0)
    layer = gs.ImplicitLayer(gs.synthetic.TanhCell(4, 0.5, generator=generator), gs.Neumann(3, 0.5))
    monitor.attach(layer)
    x = torch.randn(3, 4, generator=generator)

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter))

    def run(n):
        for _ in range(n):
            layer(x, h0=torch.zeros_like(x)).sum().backward()

    run(5)
    before = live_tensors()
    run(40)
    assert live_tensors() <= before
    assert monitor.observations == 45 and monitor.records == []


def test_watch_any_deq_with_a_function_cell():
    # A hand-written DEQ step: the user solves h*, re-attaches F once (one-step gradient)
    # and hands the monitor F as fn(params, h, x) with its parameters.
    generator = torch.Generator().manual_seed(0)
    W = (0.5 * torch.randn(6, 6, generator=generator, dtype=F64) / 6**0.5).requires_grad_()
    fn = lambda p, h, x: torch.tanh(h @ p["W"].T + x)
    x = torch.randn(4, 6, generator=generator, dtype=F64)
    fp = gs.find_fixed_point(lambda h, x: fn({"W": W.detach()}, h, x), x, rtol=1e-12)
    monitor = gs.GradientMonitor(
        estimators=[gs.Neumann(40, 1.0)], exact=gs.Exact(gs.solvers.Dense()), schedule=gs.monitor.Every(1)
    )
    h = fn({"W": W}, fp.value, x)
    h = monitor.watch(h, fn, x, params={"W": W.detach()}, training_estimator=gs.OneStep())
    (h.sum() ** 2).backward()
    df = monitor.dataframe()
    cos = df[(df.param == "all") & (df.metric == "cosine")].set_index("estimator").value
    assert cos["Neumann(40, 1)"] == pytest.approx(1.0, abs=1e-10)
    assert set(df[df.estimator == "OneStep"].role) == {"training"}
    # The training gradient really is the one-step gradient the monitor recomputed.
    problem = gs.FixedPointProblem.from_function(fn, {"W": W.detach()}, fp.value, x)
    g = 2 * h.detach().sum() * torch.ones_like(h)
    onestep = gs.estimate_gradient(problem, g, gs.OneStep())
    torch.testing.assert_close(W.grad, onestep.grads["W"], rtol=1e-10, atol=1e-12)


def test_torchdeq_model_is_monitored():
    torchdeq = pytest.importorskip("torchdeq")
    generator = torch.Generator().manual_seed(0)
    cell = gs.synthetic.TanhCell(8, 0.6, generator=generator)
    deq = torchdeq.get_deq(f_solver="fixed_point_iter", f_max_iter=60, f_tol=1e-6, grad=5, tau=0.5)
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), exact=gs.Exact(gs.solvers.GMRES(rtol=1e-6))
    )
    monitor.attach_torchdeq(deq, cell, name="torchdeq", training_estimator=gs.Unrolled(5, 0.5))
    x = torch.randn(4, 8, generator=generator)
    z_out, _ = deq(lambda z: cell(z, x), torch.zeros(4, 8))
    z_out[-1].square().sum().backward()
    torchdeq_grad = cell.W.weight.grad.clone()
    df = monitor.dataframe()
    assert monitor.errors == 0 and monitor.observations == 1
    overall = df[df.param == "all"].set_index(["estimator", "metric"]).value
    assert overall[("forward", "residual")] <= 1e-5
    assert ("torchdeq", "nstep") in overall.index
    # TorchDEQ's grad=5, tau=0.5 is UPG A(5, 0.5): its .grad agrees with gradscope's.
    assert overall[("Unrolled(5, 0.5)", "cosine")] > 0.9
    problem = gs.FixedPointProblem.from_module(cell, z_out[-1].detach(), x, rtol=1e-3)
    ours = gs.estimate_gradient(problem, 2 * z_out[-1].detach(), gs.Unrolled(5, 0.5))
    assert (
        gs.compare(gs.estimators.GradientEstimate.from_grads({"W.weight": torchdeq_grad}), ours).cosine > 0.99
    )


def test_torchdeq_model_with_weight_norm_is_monitored_on_its_real_parameters():
    # TorchDEQ's apply_norm caches `weight`, recomputed from weight_g/weight_v only by
    # reset_norm: the adapter must differentiate weight_g/weight_v (it used to see zeros).
    torchdeq = pytest.importorskip("torchdeq")
    from torchdeq.norm import apply_norm, reset_norm

    generator = torch.Generator().manual_seed(0)
    cell = gs.synthetic.TanhCell(8, 0.6, generator=generator)
    apply_norm(cell, "weight_norm")
    cell.double()  # float64, so that the exact reference certifies 1e-8
    reset_norm(cell)
    assert {"W.weight_g", "W.weight_v"} <= {n for n, _ in cell.named_parameters()}
    deq = torchdeq.get_deq(f_solver="fixed_point_iter", f_max_iter=80, f_tol=1e-7, grad=5, tau=0.5)
    monitor = gs.GradientMonitor(
        estimators=[gs.Neumann(30, 1.0)], schedule=gs.monitor.Every(1), exact=gs.Exact(gs.solvers.GMRES(rtol=1e-8))
    )
    monitor.attach_torchdeq(deq, cell, name="torchdeq", training_estimator=gs.Unrolled(5, 0.5))
    x = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    reset_norm(cell)
    z_out, _ = deq(lambda z: cell(z, x), torch.zeros(4, 8, dtype=torch.float64))
    z_out[-1].square().sum().backward()
    df = monitor.dataframe()
    assert monitor.errors == 0 and monitor.observations == 1
    rows = df[(df.metric == "cosine") & (df.estimator == "Neumann(30, 1)")].set_index("param").value
    # ρ(J) ≤ 0.6: 30 undamped Neumann terms reach the exact gradient on every parameter
    assert rows["W.weight_g"] > 0.999 and rows["W.weight_v"] > 0.999
