"""
Choosing λ and k from a theory report and the spectrum
======================================================

A phantom gradient has two knobs: the damping :math:`\\lambda` and the number of steps
:math:`k`. Whether a choice works is decided by the eigenvalues :math:`\\mu` of the
Jacobian :math:`J = \\partial F/\\partial h` at the equilibrium: the Neumann series of
NPG (and UPG, which equals it at an exact fixed point) multiplies the error by
:math:`B_\\lambda = (1 - \\lambda) I + \\lambda J` at each step, so it converges exactly
when :math:`\\rho(B_\\lambda) < 1` (see :doc:`/explanation/damping`).

This tutorial reads that off a model twice:

1. a tanh cell with :math:`\\rho(J) = 0.9`, where every :math:`\\lambda \\in (0, 1]`
   converges and the question is how many steps are needed;
2. a linear cell with an eigenvalue :math:`\\mu = -1.5`, where :math:`\\lambda = 1`
   diverges and the report says so.

The tools: :func:`~gradscope.check_theory` (one call, a printed report),
:func:`gradscope.plots.plot_spectrum` (the eigenvalues with the stability disks of
:math:`B_\\lambda`), :func:`~gradscope.theory.damping_limit`,
:func:`~gradscope.theory.optimal_damping`, :func:`~gradscope.theory.steps_needed`, and a
:func:`~gradscope.sweeps.sweep` of the :math:`(k, \\lambda)` grid against the exact gradient.
"""

# %%
# 1. A tanh cell with a chosen ρ(J)
# ---------------------------------
# :math:`F(h, x) = \tanh(W h + U x + b)` on one sample of width 16, in float64. The
# Jacobian at :math:`h^\star` is :math:`J = \mathrm{diag}(1 - h^{\star 2}) W`, so
# :math:`\rho(J)` depends on :math:`W` *and* on where the equilibrium lands (rescaling
# :math:`W` moves :math:`h^\star` into or out of saturation). A bisection on the scale
# of :math:`W`, re-solving :math:`h^\star` each time, sets :math:`\rho(J) = 0.9`.

import matplotlib.pyplot as plt
import torch

import gradscope as gs

torch.manual_seed(0)
d, n = 16, 8
dtype = torch.float64


def tanh_cell(p, h, x):
    return torch.tanh(p["W"] @ h + p["U"] @ x + p["b"])


W0 = torch.randn(d, d, dtype=dtype) / d**0.5
params = {
    "W": W0,
    "U": torch.randn(d, n, dtype=dtype) / n**0.5,
    "b": 0.1 * torch.randn(d, dtype=dtype),
}
x = torch.randn(n, dtype=dtype)


def equilibrium(scale):
    p = dict(params, W=scale * W0)
    fp = gs.find_fixed_point(
        lambda h, x: tanh_cell(p, h, x), x, h0=torch.zeros(d, dtype=dtype), rtol=1e-13
    )
    return gs.FixedPointProblem.from_function(tanh_cell, p, fp.value, x)


def rho_at(scale):
    return gs.spectral_radius(equilibrium(scale), gs.spectral.DenseSpectrum()).value


target, lo, hi = 0.9, 0.0, 2.0  # bisection on the scale of W: ρ(J) = 0.44 at 1, > 1 at 2
for _ in range(40):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if rho_at(mid) < target else (lo, mid)
problem = equilibrium(lo)
print(problem)
print("ρ(J) =", round(gs.spectral_radius(problem).value, 4), "(Arnoldi)")

# %%
# The theory report
# ~~~~~~~~~~~~~~~~~
# :func:`~gradscope.check_theory` judges one estimator, here NPG with
# :math:`k = 5, \lambda = 0.5` (the setting seen most in practice), on a cotangent
# :math:`g = \partial\ell/\partial h^\star`. Each line is a number, what it means and
# where the statement comes from: **[derived]** results are ours (:ref:`theory-damping`), the
# others are the paper's or plain measurements.

g = torch.randn(d, dtype=dtype)
report = gs.check_theory(problem, gs.Neumann(5, 0.5), g)
print(report)

# %%
# How to read it, top to bottom:
#
# * the **fixed-point residual** must be small, or nothing below holds;
# * **ρ(J) < 1**: fixed-point iteration converges, and so does the undamped series;
# * **σ_min(I − J)** is how close the exact adjoint system is to singular;
# * **λ_max** is the largest damping for which the series converges — here above 1,
#   so every :math:`\lambda \in (0, 1]` is admissible;
# * **‖B_λ^k‖₂** is the worst-case relative error of the *k*-step adjoint. At
#   :math:`k = 5, \lambda = 0.5` it is far from small: the report's last line says how
#   many steps this :math:`\lambda` needs for a relative error of :math:`10^{-3}`;
# * **Theorem 1** (Geng et al. 2021) gives a *sufficient* condition for ascent; when it
#   fails, the measured inner product and cosine below it say what actually happened.
#
# The findings are also fields: ``report["ρ(J)"].value``, ``report.limit``,
# ``report.steps``, and ``report.to_dict()`` for JSON.

print(report["cosine"].value, report.limit.exists, report.steps.tolerance_steps)

# %%
# The spectrum and the stability disks
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# :math:`|1 - \lambda(1 - \mu)| < 1` says that :math:`\mu` lies inside the disk of
# centre :math:`1 - 1/\lambda` and radius :math:`1/\lambda`. All eigenvalues inside the
# disk of a :math:`\lambda`: that :math:`\lambda` converges. Smaller :math:`\lambda`
# gives larger disks (more robust) that converge more slowly near :math:`\mu = 1`. The
# disk of :math:`\lambda = 1` is the unit disk.

spectrum = gs.spectral_radius(problem, gs.spectral.DenseSpectrum())
fig = gs.plots.plot_spectrum(spectrum.eigenvalues, damping=[0.5, 1.0])

# %%
# The same numbers as function calls:

limit = gs.theory.damping_limit(spectrum)
choice = gs.theory.optimal_damping(spectrum)
print(limit.message)
print(f"optimal λ in (0, 1]: {choice.damping:.3g}, ρ(B_λ) = {choice.radius:.3g}")
for lam in (0.5, choice.damping):
    k = gs.theory.steps_needed(problem, lam, tol=1e-3)
    print(f"λ = {lam:.3g}: k = {k.tolerance_steps} for a relative adjoint error ≤ 1e-3")
    print("   ", k.note)

# %%
# The sweep: what the grid really gives
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The bounds are worst cases over all cotangents. :func:`~gradscope.sweeps.sweep` measures
# one cotangent: every :math:`(k, \lambda)` of NPG against the exact gradient.

ks, lambdas = range(1, 10), (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
result = gs.sweeps.sweep(problem, g, steps=ks, dampings=lambdas, methods=(gs.Neumann,))
frame = result.to_dataframe().rename(columns={"steps": "k"})
fig = gs.plots.plot_damping_heatmap(
    frame, value="cosine", title="NPG: cosine to the exact gradient"
)
print(result.table("relative_error"))

# %%
# With a spectrum inside the unit disk, larger :math:`\lambda` is better at equal
# :math:`k` (the effective horizon is :math:`k\lambda`), as the report's optimal
# :math:`\lambda = 1` predicted. Even :math:`k = 9` leaves a relative error near 0.4 at
# :math:`\rho(J) = 0.9`: :func:`~gradscope.theory.steps_needed` above asks for :math:`k = 71` at
# :math:`\lambda = 1` for :math:`10^{-3}`. Whether a biased but well-aligned gradient
# is good enough for training is a different question; the monitoring tutorial
# measures it along training.
#
# 2. When λ = 1 is not admissible
# -------------------------------
# A linear cell :math:`F(h, x) = W h + b + x` with symmetric :math:`W` and eigenvalues
# from :math:`-1.5` to :math:`0.7`. The equilibrium :math:`h^\star = (I - W)^{-1}(b + x)`
# exists and the exact gradient is fine (:math:`I - J` is far from singular), but
# :math:`\rho(J) = 1.5`: plain fixed-point iteration diverges, and so does the undamped
# Neumann series. Damping rescues it — up to :math:`\lambda_{\max} = 2/(1 - \mu) = 0.8`.

d2 = 8
Q = torch.linalg.qr(torch.randn(d2, d2, dtype=dtype)).Q
mu = torch.tensor([-1.5, -0.8, -0.3, 0.0, 0.2, 0.4, 0.6, 0.7], dtype=dtype)
params2 = {"W": Q @ torch.diag(mu) @ Q.T, "b": torch.zeros(d2, dtype=dtype)}
x2 = torch.randn(d2, dtype=dtype)


def linear_cell(p, h, x):
    return p["W"] @ h + p["b"] + x


h2 = torch.linalg.solve(torch.eye(d2, dtype=dtype) - params2["W"], x2)
problem2 = gs.FixedPointProblem.from_function(linear_cell, params2, h2, x2)
g2 = torch.randn(d2, dtype=dtype)

report2 = gs.check_theory(problem2, gs.Neumann(5, 1.0), g2)
print(report2)

# %%
# The report flags ``λ = 1 admissible: no`` with :math:`\rho(B_1) = 1.5`, and the
# recommendation names the admissible range and the optimal :math:`\lambda`. In the
# complex plane: the eigenvalue at :math:`-1.5` lies outside the disk of
# :math:`\lambda = 1` (the unit disk) and inside the disk of :math:`\lambda = 0.5`.

spectrum2 = gs.spectral_radius(problem2, gs.spectral.DenseSpectrum())
fig = gs.plots.plot_spectrum(spectrum2.eigenvalues, damping=[1.0, 0.5])
print(gs.theory.damping_limit(spectrum2).message)
choice2 = gs.theory.optimal_damping(spectrum2)
print(f"optimal λ: {choice2.damping:.3g} (ρ(B_λ) = {choice2.radius:.3g})")

# %%
# The sweep shows the divergence: at :math:`\lambda = 1` and :math:`0.9` the relative
# error first falls (the eigenvalues inside the disk converge), then grows with
# :math:`k` as the one outside takes over; the cells where the series grew carry a
# :class:`~gradscope.ConvergenceWarning` message in their ``warning`` column. At
# :math:`\lambda \le 0.7` the error falls steadily.

result2 = gs.sweeps.sweep(problem2, g2, steps=ks, dampings=lambdas, methods=(gs.Neumann,))
frame2 = result2.to_dataframe().rename(columns={"steps": "k"})
title = "NPG: relative error (linear cell, μ = −1.5)"
fig = gs.plots.plot_damping_heatmap(frame2, value="relative_error", title=title, fmt=".2g")
warned = [(row["steps"], row["damping"]) for row in result2.rows if row["warning"]]
print(len(warned), "of", len(result2.rows), "cells warned (k, λ):", warned)
plt.show()
