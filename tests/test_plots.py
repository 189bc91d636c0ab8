"""Plot functions run under Agg and draw the data they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import gradscope as gs
from gradscope import plots

pd = pytest.importorskip("pandas")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _records():
    rows = []
    for step in range(0, 40, 5):
        for role, name, cos, vjps in (
            ("training", "Neumann(5, 0.5)", 0.99 - step / 1000, 5),
            ("estimator", "OneStep", 0.9 - step / 400, 1),
        ):
            for metric, value in (
                ("cosine", cos),
                ("relative_error", 1 - cos),
                ("vjps", vjps),
                ("seconds", 1e-3 * vjps),
            ):
                rows.append(
                    dict(
                        step=step,
                        layer="deq",
                        role=role,
                        estimator=name,
                        param="all",
                        metric=metric,
                        value=value,
                    )
                )
            rows.append(
                dict(
                    step=step,
                    layer="deq",
                    role=role,
                    estimator=name,
                    param="W",
                    metric="cosine",
                    value=cos,
                )
            )
        for metric, value in (("converged", 1.0), ("residual", 1e-7), ("vjps", 12)):
            rows.append(
                dict(
                    step=step,
                    layer="deq",
                    role="exact",
                    estimator="Exact(GMRES)",
                    param="all",
                    metric=metric,
                    value=value,
                )
            )
    return pd.DataFrame(rows, columns=list(gs.monitor.COLUMNS))


def test_plot_metric_draws_one_line_per_estimator():
    df = _records()
    fig = plots.plot_metric(df, "cosine")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"Neumann(5, 0.5) (training)", "OneStep"}
    np.testing.assert_allclose(lines["OneStep"].get_xdata(), np.arange(0, 40, 5))
    np.testing.assert_allclose(lines["OneStep"].get_ydata(), 0.9 - np.arange(0, 40, 5) / 400)
    assert ax.get_ylabel() == "cosine"
    assert plots.plot_metric(df, "relative_error").axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="no estimator rows"):
        plots.plot_metric(df, "nonsense")


def test_cosine_distribution_has_one_ridge_per_step_range():
    fig = plots.plot_cosine_distribution(_records(), bins=4)
    assert len(fig.axes) == 4
    # Each ridge counts the cosines of its steps: 8 steps, 2 per ridge, 2 rows (all + W) each.
    assert [sum(p.get_height() for p in ax.patches) for ax in fig.axes] == [4, 4, 4, 4]
    assert "Neumann(5, 0.5)" in fig.axes[-1].get_xlabel()


def test_damping_heatmap_pivots_k_and_damping():
    frame = pd.DataFrame(
        [dict(k=k, damping=lam, value=k * lam) for k in (1, 2, 5) for lam in (0.5, 1.0)]
    )
    fig = plots.plot_damping_heatmap(frame, title="cosine")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1.0", "0.5"]
    values = ax.collections[0].get_array().reshape(2, 3)
    np.testing.assert_allclose(values, [[1, 2, 5], [0.5, 1, 2.5]])
    with pytest.raises(ValueError, match="column 'damping'"):
        plots.plot_damping_heatmap(frame.drop(columns="damping"))


def test_spectrum_draws_eigenvalues_unit_circle_and_disks():
    mu = torch.tensor([-3.0 + 0j, -1 + 1j, 0.5 + 0j])
    fig = plots.plot_spectrum(mu, damping=[0.4, 0.5])
    (ax,) = fig.axes
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.sort(points[:, 0]), [-3, -1, 0.5])
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:3] == ["unit circle", "ρ(B_λ) < 1 disk, λ = 0.4", "ρ(B_λ) < 1 disk, λ = 0.5"]
    disk = ax.get_lines()[2].get_xydata()  # λ = 0.5: centre −1, radius 2
    np.testing.assert_allclose(np.hypot(disk[:, 0] + 1, disk[:, 1]), 2.0, atol=1e-12)
    assert ax.get_xlim()[0] <= -3.1 and "3.000" in ax.get_title()


def test_residual_traces_from_solutions():
    A = gs.operators.FunctionOperator(lambda v: 2 * v - 0.5 * v.roll(1), torch.zeros(6, dtype=torch.float64), "A")
    b = torch.ones(6, dtype=torch.float64)
    sols = {
        "GMRES": gs.solvers.linear_solve(A, b, gs.solvers.GMRES(rtol=1e-10)),
        "BiCGSTAB": gs.solvers.linear_solve(A, b, gs.solvers.BiCGSTAB(rtol=1e-10)),
    }
    fig = plots.plot_residual_traces(sols)
    (ax,) = fig.axes
    lines = [line for line in ax.get_lines() if line.get_label().startswith(("GMRES", "BiCGSTAB"))]
    assert [line.get_label() for line in lines] == ["GMRES ✓", "BiCGSTAB ✓"]
    assert len(lines[0].get_xdata()) == sols["GMRES"].steps
    assert ax.get_yscale() == "log"


def test_cost_accuracy_places_each_estimator():
    fig = plots.plot_cost_accuracy(_records())
    (ax,) = fig.axes
    _, labels = ax.get_legend_handles_labels()
    assert sorted(labels) == ["Exact(GMRES)", "Neumann(5, 0.5)", "OneStep"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_report_writes_pngs(tmp_path):
    paths = plots.report(_records(), tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "cosine.png",
        "cost_accuracy.png",
        "dynamic_precision.png",
        "relative_error.png",
    ]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in paths)
