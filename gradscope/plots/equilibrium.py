"""Figures of one equilibrium: the spectrum of J, a (k, λ) sweep, solver residuals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._checks import fail
from .common import pyplot_and_seaborn

__all__ = ["plot_damping_heatmap", "plot_residual_traces", "plot_spectrum"]


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
    plt, sns = pyplot_and_seaborn()
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
    plt, sns = pyplot_and_seaborn()
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


def plot_residual_traces(solutions: Mapping[str, Any] | Sequence[Any], title: str | None = None):
    """Residual traces of linear solves (:class:`Solution.trace <gradscope.solvers.Solution>`) or forward solves (``FixedPointResult.trace``).

    Args:
        solutions: a mapping label → solution, or a sequence (labelled by solver).
        title: the title.

    Returns:
        The figure: one axes, log residual against step, one line per solve (the
        largest per-sample residual at each step).

    """
    plt, sns = pyplot_and_seaborn()
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
