"""A user-written estimator that implements only ``adjoint`` works everywhere gradscope
takes an estimator: estimate_gradient, compare, sweep, the ImplicitLayer and the monitor.

The reference is the built-in estimator with the same adjoint (the k-term Neumann series,
written out by hand with the operator algebra), and for the layer a dense jacrev check.
"""

from dataclasses import dataclass

import torch
from cases import DT, TanhCell, randn, solved_problem

import gradscope as gs
from gradscope.operators import damped


@dataclass(frozen=True)
class MyNeumann(gs.estimators.DampedSteps):
    """λ Σ_{t<k} (B_λᵀ)^t g, written by a user with the operator algebra."""

    def adjoint(self, JT, g):
        B = damped(JT, self.damping)
        total, term = g, g
        for _ in range(self.steps - 1):
            term = B(term)
            total = total + term
        return self.damping * total


class Halved(gs.Estimator):
    """u = g / 2: the simplest adjoint a user could write (no product with J)."""

    def adjoint(self, JT, g):
        return 0.5 * g


def test_user_estimator_in_estimate_gradient_and_compare():
    problem = solved_problem(TanhCell(d=6, n=4), randn(3, 4))
    g = randn(3, 6, seed=2)
    mine = gs.estimate_gradient(problem, g, MyNeumann(4, 0.5))
    builtin = gs.estimate_gradient(problem, g, gs.Neumann(4, 0.5))
    for n in builtin.grads:
        torch.testing.assert_close(mine.grads[n], builtin.grads[n], rtol=1e-12, atol=1e-14)
    assert mine.cost.vjps == builtin.cost.vjps == 4 and mine.status.ok
    half = gs.estimate_gradient(problem, g, Halved())
    one = gs.estimate_gradient(problem, g, gs.OneStep())
    c = gs.compare(half, one)
    assert abs(c.cosine - 1) < 1e-12 and abs(c.norm_ratio - 0.5) < 1e-12
    assert half.name == "Halved"


def test_user_estimator_in_sweep():
    problem = solved_problem(TanhCell(d=6, n=4), randn(3, 4))
    g = randn(3, 6, seed=2)
    result = gs.sweeps.sweep(problem, g, steps=[1, 3], dampings=[0.5], methods=(MyNeumann, gs.Neumann))
    rows = {(r["method"], r["steps"]): r["cosine"] for r in result.rows}
    for k in (1, 3):
        assert abs(rows[("MyNeumann", k)] - rows[("Neumann", k)]) < 1e-12


def test_user_estimator_in_the_layer_matches_the_builtin_backward():
    x = randn(3, 4)
    grads = {}
    for estimator in (MyNeumann(5, 0.5), gs.Neumann(5, 0.5)):
        cell = TanhCell(d=6, n=4)
        layer = gs.ImplicitLayer(cell, estimator, gs.layers.ForwardSolver(rtol=1e-12, max_steps=200))
        layer(x, h0=torch.zeros(3, 6, dtype=DT)).backward(randn(3, 6, seed=7))
        assert layer.last_backward.estimator == estimator.name and layer.last_backward.vjps == 5
        grads[type(estimator).__name__] = {n: p.grad.clone() for n, p in cell.named_parameters()}
    for n, g_builtin in grads["Neumann"].items():
        torch.testing.assert_close(grads["MyNeumann"][n], g_builtin, rtol=1e-12, atol=1e-14)


def test_user_estimator_in_the_monitor():
    cell = TanhCell(d=6, n=4)
    layer = gs.ImplicitLayer(cell, gs.Neumann(5, 0.5), gs.layers.ForwardSolver(rtol=1e-12, max_steps=200))
    monitor = gs.GradientMonitor(estimators=[Halved(), MyNeumann(5, 0.5)], schedule=gs.monitor.Every(1))
    monitor.attach(layer)
    layer(randn(3, 4), h0=torch.zeros(3, 6, dtype=DT)).sum().backward()
    frame = monitor.dataframe()
    assert monitor.errors == 0 and monitor.observations == 1
    names = set(frame["estimator"])
    assert {"Halved", "MyNeumann(5, 0.5)"} <= names
    cos = frame[(frame.metric == "cosine") & (frame.param == "all")].set_index("estimator")["value"]
    assert abs(cos["MyNeumann(5, 0.5)"] - cos["Neumann(5, 0.5)"]) < 1e-10
