r"""Figures for gradient quality — the only module that imports matplotlib and seaborn.

Both are imported inside the functions, so ``import gradscope`` stays light. Each function
returns a :class:`matplotlib.figure.Figure` and never calls ``show``; :func:`plots.report <gradscope.plots.report>`
writes every figure that the data allows as PNG files.

Inputs are the monitor's tidy records (a pandas DataFrame with columns
``step, layer, role, estimator, param, metric, value``, see
:meth:`GradientMonitor.dataframe <gradscope.GradientMonitor.dataframe>`), a DataFrame with columns ``k, damping,
value`` for sweeps, complex eigenvalues for spectra and :class:`~gradscope.solvers.Solution`
objects for residual traces.

Example:
    >>> import torch
    >>> from gradscope import plots
    >>> fig = plots.plot_spectrum(torch.tensor([0.5 + 0.2j, 0.5 - 0.2j, -0.3]), damping=0.5)
    >>> fig.axes[0].get_title()
    'Spectrum of J (ρ(J) = 0.539)'
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)

"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._checks import fail

__all__ = [
    "plot_cosine_distribution",
    "plot_cost_accuracy",
    "plot_damping_heatmap",
    "plot_jacobian_facts",
    "plot_metric",
    "plot_residual_traces",
    "plot_spectrum",
    "report",
    "save",
]


def _mpl():
    import matplotlib.pyplot as plt  # without a display matplotlib picks Agg itself
    import seaborn as sns

    return plt, sns


def _frame(data):
    """The records as a DataFrame, from a monitor or a DataFrame."""
    frame = data.dataframe() if hasattr(data, "dataframe") else data
    if not hasattr(frame, "columns"):
        fail(
            "plots",
            f"got a {type(data).__name__}; expected a GradientMonitor or a DataFrame.",
            TypeError,
        )
    return frame


def _comparison_rows(frame, metric: str):
    rows = frame[(frame["metric"] == metric) & (frame["param"] == "all")]
    return rows[rows["role"].isin(["estimator", "training"])]


def plot_metric(data, metric: str = "cosine", *, log: bool | None = None):
    """A metric along training, one line per estimator (the training one drawn thicker).

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame.
        metric: ``cosine``, ``relative_error``, ``absolute_error``, ``inner``,
            ``norm_ratio`` (or any recorded metric of the estimators).
        log: log-scale the y axis (default: for errors).

    Returns:
        The figure (one axes; one line per estimator).

    Raises:
        ValueError: no rows hold the metric.

    """
    plt, sns = _mpl()
    frame = _frame(data)
    rows = _comparison_rows(frame, metric)
    if rows.empty:
        fail(
            "plot_metric", f"no estimator rows hold metric {metric!r}; expected a recorded metric."
        )
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    training = set(rows[rows["role"] == "training"]["estimator"])
    for name, group in rows.groupby("estimator", sort=True):
        group = group.sort_values("step")
        ax.plot(
            group["step"],
            group["value"],
            marker="o",
            markersize=3,
            linewidth=2.6 if name in training else 1.4,
            zorder=3 if name in training else 2,
            alpha=1.0 if name in training else 0.85,
            label=f"{name} (training)" if name in training else name,
        )
    if log is None:
        log = metric in ("relative_error", "absolute_error")
    if log and bool((rows["value"] > 0).all()):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric.replace('_', ' ')} against the exact gradient")
    ax.legend(fontsize="small")
    sns.despine(fig=fig)
    return fig


def plot_cosine_distribution(data, bins: int = 4, estimator: str | None = None):
    """Dynamic precision: the distribution of the cosine to the exact gradient along training.

    The paper's "dynamic precision" figure (Geng et al. 2021, Fig. 3): training is cut
    into ``bins`` consecutive step ranges, and each gets a histogram (a ridge) of the
    cosines observed in it. Per-parameter cosines are pooled with the overall one when
    there are few observations.

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame.
        bins: number of step ranges (ridges).
        estimator: the estimator to show (default: the training one, else the first).

    Returns:
        The figure: one axes per step range, sharing the x axis (cosine).

    """
    plt, sns = _mpl()
    frame = _frame(data)
    rows = frame[(frame["metric"] == "cosine") & frame["role"].isin(["estimator", "training"])]
    if rows.empty:
        fail(
            "plot_cosine_distribution", "no cosine rows; expected monitor records with comparisons."
        )
    if estimator is None:
        training = rows[rows["role"] == "training"]["estimator"]
        estimator = training.iloc[0] if len(training) else sorted(rows["estimator"])[0]
    rows = rows[rows["estimator"] == estimator]
    steps = np.sort(rows["step"].unique())
    bins = max(1, min(bins, len(steps)))
    edges = np.array_split(steps, bins)
    # Zoom on the observed range (cosines near 1 would be one bar on [0, 1]).
    low = float(rows["value"].min())
    low = max(-1.0, math.floor((low - 0.02) * 20) / 20)
    fig, axes = plt.subplots(
        bins, 1, figsize=(6.4, 1.1 + 0.9 * bins), sharex=True, layout="constrained"
    )
    axes = np.atleast_1d(axes)
    palette = sns.color_palette("viridis", bins)
    for ax, chunk, color in zip(axes, edges, palette):
        values = rows[rows["step"].isin(chunk)]["value"].to_numpy()
        ax.hist(values, bins=np.linspace(low, 1.0, 41), color=color, alpha=0.85)
        ax.set_yticks([])
        ax.set_ylabel(f"{int(chunk[0])}–{int(chunk[-1])}", rotation=0, ha="right", va="center")
        ax.axvline(float(np.median(values)), color="k", linewidth=0.8, linestyle="--")
        sns.despine(ax=ax, left=True)
    axes[-1].set_xlabel(f"cosine({estimator}, exact)")
    axes[0].set_title(
        f"Dynamic precision of {estimator}\n(one histogram per step range; dashed: median)"
    )
    return fig


def plot_damping_heatmap(frame, value: str = "value", title: str | None = None, fmt: str = ".2f"):
    """A (k, λ) heatmap of a quality measure (cosine or error) of a phantom gradient.

    Args:
        frame: DataFrame with columns ``k``, ``damping`` and ``value`` (one row per
            cell; repeated cells are averaged).
        value: the column to show.
        title: the title (default: the column's name).
        fmt: the annotation format.

    Returns:
        The figure: one heatmap, rows = damping λ (descending), columns = steps k.

    """
    plt, sns = _mpl()
    for column in ("k", "damping", value):
        if column not in frame.columns:
            fail(
                "plot_damping_heatmap",
                f"frame has no column {column!r}; expected k, damping, {value}.",
            )
    table = frame.pivot_table(index="damping", columns="k", values=value, aggfunc="mean")
    table = table.sort_index(ascending=False)
    fig, ax = plt.subplots(
        figsize=(1.2 + 0.55 * table.shape[1], 1.0 + 0.45 * table.shape[0]), layout="constrained"
    )
    sns.heatmap(
        table, annot=table.size <= 150, fmt=fmt, cmap="viridis", ax=ax, cbar_kws={"label": value}
    )
    ax.set_xlabel("steps k")
    ax.set_ylabel("damping λ")
    ax.set_title(title or value)
    return fig


def plot_spectrum(
    eigenvalues, damping: float | Sequence[float] | None = 0.5, title: str | None = None
):
    r"""The spectrum of J in the complex plane, the unit circle and the stability disks of B_λ.

    ``ρ(B_λ) < 1`` exactly when every eigenvalue μ of J lies inside the disk of centre
    ``1 − 1/λ`` and radius ``1/λ`` (:ref:`theory-damping`) — drawn for each damping given.

    Args:
        eigenvalues: complex (or real) eigenvalues, a tensor, array or sequence.
        damping: λ or several λ whose disks to draw (None: none).
        title: the title.

    Returns:
        The figure: one axes with equal aspect.

    """
    plt, sns = _mpl()
    if isinstance(eigenvalues, torch.Tensor):
        eigenvalues = eigenvalues.detach().cpu().numpy()
    mu = np.asarray(eigenvalues).astype(complex).reshape(-1)
    fig, ax = plt.subplots(figsize=(5.2, 5.2), layout="constrained")
    theta = np.linspace(0, 2 * math.pi, 400)
    ax.plot(np.cos(theta), np.sin(theta), color="0.3", linewidth=1.0, label="unit circle")
    lambdas = (
        []
        if damping is None
        else ([damping] if isinstance(damping, (int, float)) else list(damping))
    )
    colors = sns.color_palette("deep", len(lambdas) + 1)
    # Limits: the unit circle, every eigenvalue and the disks (capped at 5 for small λ).
    left = min([-1.2, *(1.1 * mu.real)], default=-1.2)
    right = max([1.2, *(1.1 * mu.real)], default=1.2)
    top = max([1.2, *(1.1 * np.abs(mu.imag))], default=1.2)
    for lam in lambdas:
        left = min(left, max(1 - 2 / lam, -5.0) - 0.1)
        top = max(top, min(1 / lam, 5.0) + 0.1)
    for lam, color in zip(lambdas, colors[1:]):
        centre, radius = 1 - 1 / lam, 1 / lam
        ax.plot(
            centre + radius * np.cos(theta),
            radius * np.sin(theta),
            color=color,
            linestyle="--",
            linewidth=1.2,
            label=f"ρ(B_λ) < 1 disk, λ = {lam:g}",
        )
    ax.scatter(
        mu.real, mu.imag, s=14, color=colors[0], zorder=3, label=f"eigenvalues of J ({mu.size})"
    )
    rho = float(np.abs(mu).max()) if mu.size else float("nan")
    ax.axhline(0, color="0.85", linewidth=0.6, zorder=0)
    ax.axvline(0, color="0.85", linewidth=0.6, zorder=0)
    ax.set_xlim(left, right)
    ax.set_ylim(-top, top)
    ax.set_aspect("equal")
    ax.set_xlabel("Re μ")
    ax.set_ylabel("Im μ")
    ax.set_title(title or f"Spectrum of J (ρ(J) = {rho:.3f})")
    ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_residual_traces(solutions: Mapping[str, Any] | Sequence[Any], title: str | None = None):
    """Residual traces of linear solves (:class:`Solution.trace <gradscope.solvers.Solution>`) or forward solves (``FixedPointResult.trace``).

    Args:
        solutions: a mapping label → solution, or a sequence (labelled by solver).
        title: the title.

    Returns:
        The figure: one axes, log residual against step, one line per solve (the
        largest per-sample residual at each step).

    """
    plt, sns = _mpl()
    if not isinstance(solutions, Mapping):
        solutions = {
            f"{type(getattr(s, 'solver', s)).__name__} #{i}": s for i, s in enumerate(solutions)
        }
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for label, solution in solutions.items():
        trace = solution.trace
        if isinstance(trace, torch.Tensor):
            trace = trace.detach().cpu().double()
            trace = trace.max(dim=1).values.numpy() if trace.dim() == 2 else trace.numpy()
        trace = np.asarray(trace, dtype=float).reshape(-1)
        if trace.size == 0:
            continue
        converged = getattr(solution, "converged", None)
        mark = "" if converged is None else (" ✓" if converged else " ✗")
        ax.semilogy(
            np.arange(1, trace.size + 1),
            np.maximum(trace, 1e-300),
            marker=".",
            label=f"{label}{mark}",
        )
        rtol = getattr(getattr(solution, "solver", None), "rtol", None)
        if rtol is not None:
            ax.axhline(rtol, color="0.6", linestyle=":", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("relative residual")
    ax.set_title(title or "Solver residual traces (dotted: rtol)")
    ax.legend(fontsize="small")
    sns.despine(fig=fig)
    return fig


def plot_cost_accuracy(data, cost: str = "vjps"):
    """Cost against accuracy per estimator: VJPs (or seconds) vs relative error to the exact gradient.

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame (the mean over
            observations is plotted, with the spread as error bars), or a DataFrame with
            columns ``estimator``, ``cost`` and ``relative_error``.
        cost: ``vjps`` or ``seconds`` (for monitor records).

    Returns:
        The figure: one axes, one point per estimator (exact drawn at relative error
        equal to its solve's residual).

    """
    plt, sns = _mpl()
    frame = _frame(data)
    if {"estimator", "cost", "relative_error"} <= set(frame.columns):
        summary = frame.groupby("estimator")[["cost", "relative_error"]].agg(["mean", "std"])
    else:
        rows = frame[
            (frame["param"] == "all") & frame["role"].isin(["estimator", "training", "exact"])
        ]
        rows = rows.copy()
        rows.loc[rows["role"] == "exact", "metric"] = rows.loc[
            rows["role"] == "exact", "metric"
        ].replace({"residual": "relative_error"})
        wide = rows[rows["metric"].isin([cost, "relative_error"])].pivot_table(
            index=["step", "estimator"], columns="metric", values="value"
        )
        if cost not in wide.columns or "relative_error" not in wide.columns:
            fail("plot_cost_accuracy", f"records hold no {cost!r} and relative_error pairs.")
        wide = wide.rename(columns={cost: "cost"}).reset_index()
        summary = wide.groupby("estimator")[["cost", "relative_error"]].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    palette = sns.color_palette("deep", len(summary))
    markers = "osD^vP*Xh<>"
    for i, ((name, row), color) in enumerate(zip(summary.iterrows(), palette)):
        ax.errorbar(
            row[("cost", "mean")],
            row[("relative_error", "mean")],
            xerr=np.nan_to_num(row[("cost", "std")]),
            yerr=np.nan_to_num(row[("relative_error", "std")]),
            fmt=markers[i % len(markers)],
            markersize=9 - 1.5 * (i % 3),  # estimators that coincide (UPG = NPG) stay visible
            markerfacecolor="none" if i % 2 else color,
            color=color,
            capsize=3,
            label=name,
        )
    if bool((summary[("relative_error", "mean")] > 0).all()):
        ax.set_yscale("log")
    if bool((summary[("cost", "mean")] > 0).all()):
        ax.set_xscale("log")
    ax.set_xlabel({"vjps": "VJPs per backward", "seconds": "seconds per backward"}.get(cost, cost))
    ax.set_ylabel("relative error to the exact gradient")
    ax.set_title("Cost vs accuracy")
    ax.legend(fontsize="small")
    sns.despine(fig=fig)
    return fig


def plot_jacobian_facts(data, metrics: Sequence[str] = ("rho_J", "jacobian_norm")):
    """ρ(J), ‖J‖₂ (or other ``extra`` quantities) along training, with the line at 1.

    ρ(J) < 1 keeps the forward iteration and the undamped Neumann series convergent;
    ‖J‖₂ < 1 makes F a contraction (:ref:`theory-exact-gradient`, :ref:`theory-steps`).

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame, with the rows that
            :func:`~gradscope.monitor.theory_extra` (or another ``extra``) records.
        metrics: the extra quantities to draw.

    Returns:
        The figure (one axes; one line per quantity).

    Raises:
        ValueError: no rows hold any of the metrics.

    """
    plt, sns = _mpl()
    frame = _frame(data)
    rows = frame[(frame["role"] == "extra") & (frame["metric"].isin(list(metrics)))]
    if rows.empty:
        fail(
            "plot_jacobian_facts",
            f"no extra rows hold {list(metrics)}; monitor with extra=gradscope.monitor.theory_extra().",
        )
    labels = {"rho_J": "ρ(J)", "jacobian_norm": "‖J‖₂"}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for metric, group in rows.groupby("metric", sort=True):
        group = group.sort_values("step")
        ax.plot(
            group["step"],
            group["value"],
            marker="o",
            markersize=3,
            label=labels.get(metric, metric),
        )
    ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1, label="1")
    ax.set_xlabel("training step")
    ax.set_ylabel("value at the equilibrium")
    ax.set_title("The Jacobian of F at h* along training")
    ax.legend(fontsize="small")
    sns.despine(fig=fig)
    return fig


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure as PNG (or by the path's suffix) and close it; returns the path."""
    plt, _ = _mpl()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def report(data, folder: str | Path, dpi: int = 120) -> list[Path]:
    """Write every figure the records allow as PNG files into ``folder``.

    Writes ``cosine.png``, ``relative_error.png`` (metric along training),
    ``dynamic_precision.png`` (cosine distribution), ``cost_accuracy.png`` and
    ``jacobian.png`` (ρ(J), ‖J‖₂ when recorded); figures
    whose data are missing are skipped. Figures are closed after saving.

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame.
        folder: the output folder (created).
        dpi: resolution.

    Returns:
        The paths written.

    """
    plt, _ = _mpl()
    frame = _frame(data)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        ("cosine.png", lambda: plot_metric(frame, "cosine")),
        ("relative_error.png", lambda: plot_metric(frame, "relative_error")),
        ("dynamic_precision.png", lambda: plot_cosine_distribution(frame)),
        ("cost_accuracy.png", lambda: plot_cost_accuracy(frame)),
        ("jacobian.png", lambda: plot_jacobian_facts(frame)),
    ]
    written = []
    for name, make in jobs:
        try:
            fig = make()
        except ValueError:  # the records lack what this figure needs
            continue
        path = folder / name
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    return written
