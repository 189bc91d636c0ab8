"""Figures of a monitored training run: metrics along training, their distribution, cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._checks import fail
from .common import comparison_rows, pyplot_and_seaborn, records_frame, titled

__all__ = [
    "plot_cosine_distribution",
    "plot_cost_accuracy",
    "plot_jacobian_facts",
    "plot_metric",
    "report",
]


def plot_metric(data, metric: str = "cosine", *, log: bool | None = None):
    """A metric along training, one line per estimator (the training one drawn thicker).

    Observations without a reference (their exact solve failed: no comparison) are
    counted in the title ("n of m observations without a reference").

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
    plt, sns = pyplot_and_seaborn()
    frame = records_frame(data)
    rows = comparison_rows(frame, metric)
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
    ax.set_title(titled(f"{metric.replace('_', ' ')} against the exact gradient", frame))
    ax.legend(fontsize="small")
    sns.despine(fig=fig)
    return fig


def plot_cosine_distribution(data, bins: int = 4, estimator: str | None = None):
    """Dynamic precision: the distribution of the cosine to the exact gradient along training.

    The paper's "dynamic precision" figure (Geng et al. 2021, Fig. 3): training is cut
    into ``bins`` consecutive step ranges, and each gets a histogram (a ridge) of the
    cosines observed in it. Per-parameter cosines are pooled with the overall one when
    there are few observations.

    Observations without a reference (their exact solve failed: no comparison) are
    counted in the title ("n of m observations without a reference").

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame.
        bins: number of step ranges (ridges).
        estimator: the estimator to show (default: the training one, else the first).

    Returns:
        The figure: one axes per step range, sharing the x axis (cosine).

    """
    plt, sns = pyplot_and_seaborn()
    frame = records_frame(data)
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
        titled(
            f"Dynamic precision of {estimator}\n(one histogram per step range; dashed: median)",
            frame,
        )
    )
    return fig


def plot_cost_accuracy(data, cost: str = "vjps"):
    """Cost against accuracy per estimator: VJPs (or seconds) vs relative error to the exact gradient.

    Observations without a reference (their exact solve failed: no comparison) are
    counted in the title ("n of m observations without a reference").

    Args:
        data: a :class:`~gradscope.GradientMonitor` or its DataFrame (the mean over
            observations is plotted, with the spread as error bars), or a DataFrame with
            columns ``estimator``, ``cost`` and ``relative_error``.
        cost: ``vjps`` or ``seconds`` (for monitor records).

    Returns:
        The figure: one axes, one point per estimator (exact drawn at relative error
        equal to its solve's residual).

    """
    plt, sns = pyplot_and_seaborn()
    frame = records_frame(data)
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
    ax.set_title(titled("Cost vs accuracy", frame))
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
    plt, sns = pyplot_and_seaborn()
    frame = records_frame(data)
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
    plt, _ = pyplot_and_seaborn()
    frame = records_frame(data)
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
