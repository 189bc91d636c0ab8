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

from .common import save
from .equilibrium import plot_damping_heatmap, plot_residual_traces, plot_spectrum
from .training import (
    plot_cosine_distribution,
    plot_cost_accuracy,
    plot_jacobian_facts,
    plot_metric,
    report,
)

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
