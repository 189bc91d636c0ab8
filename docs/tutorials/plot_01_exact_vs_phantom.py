"""
Exact and phantom gradients of a small DEQ
==========================================

A deep equilibrium model (DEQ) defines its output as a fixed point
:math:`h^\\star = F(h^\\star, x; \\theta)`. Training it needs
:math:`\\nabla_\\theta \\ell(h^\\star)`. The exact answer comes from the implicit
function theorem and costs a linear solve; the *phantom gradients* of Geng et al.
(NeurIPS 2021) replace the solve by a few cheap steps. This tutorial computes both for
a small model, compares them, and shows how the phantom gradient approaches the exact
one as its number of steps :math:`k` grows, for damping :math:`\\lambda \\in \\{0.5, 1\\}`.

You will use :class:`~gradscope.FixedPointProblem`, :func:`~gradscope.find_fixed_point`,
:func:`~gradscope.estimate_gradient` with the estimators :class:`~gradscope.Exact`,
:class:`~gradscope.Unrolled`, :class:`~gradscope.Neumann` and
:class:`~gradscope.OneStep`, and :func:`~gradscope.compare`.
"""

# %%
# A DEQ cell
# ----------
# The layer map is :math:`F(h, x) = \tanh(W h + U x + b)` with a 64-dimensional state
# and a 32-dimensional input. We work in float64 so that "exact" means exact to many
# digits; everything below works in float32 too.

import matplotlib.pyplot as plt
import torch

import gradscope as gs

torch.manual_seed(0)


class Cell(torch.nn.Module):
    """F(h, x) = tanh(W h + U x + b)."""

    def __init__(self, d: int = 64, n: int = 32) -> None:
        super().__init__()
        self.W = torch.nn.Linear(d, d, bias=False)
        self.U = torch.nn.Linear(n, d)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(h) + self.U(x))


cell = Cell().double()
x = torch.randn(16, 32, dtype=torch.float64)  # a batch of 16 inputs

# %%
# Find the equilibrium
# --------------------
# :func:`~gradscope.find_fixed_point` runs Anderson acceleration per sample and returns
# the best iterate together with its *true* relative residual
# :math:`\|F(h) - h\| / \|F(h)\|`. It never claims convergence it did not check.

fp = gs.find_fixed_point(cell, x, rtol=1e-12)
print(fp)

# %%
# Freeze the problem
# ------------------
# :meth:`FixedPointProblem.from_module <gradscope.FixedPointProblem.from_module>`
# freezes the equilibrium, the inputs and the parameters. It does not touch the module:
# parameters enter through detached aliases, buffers through copies. It checks that
# ``h*`` is a fixed point (and warns with :class:`~gradscope.FixedPointWarning` if not).

problem = gs.FixedPointProblem.from_module(cell, fp.value, x)
print(problem.residual)
print("parameters:", problem.param_names)

# %%
# The cotangent :math:`g = \partial\ell/\partial h^\star` is what autograd hands the
# layer in a training step. Any tensor shaped like ``h*`` will do; here a random one
# (the loss :math:`\ell(h) = \langle g, h\rangle` has exactly this cotangent).

g = torch.randn_like(fp.value)

# %%
# The exact gradient
# ------------------
# :class:`~gradscope.Exact` solves the adjoint system :math:`(I - J^\top) u = g`
# (GMRES by default, one Krylov basis per sample) and takes one vector–Jacobian product
# :math:`\nabla_\theta \ell = F_\theta^\top u`. The :class:`~gradscope.solvers.Solution` it
# carries certifies the result with the true residual of the solve.

exact = gs.estimate_gradient(problem, g, gs.Exact())
print(exact.solution)
print(exact.cost)

# %%
# Phantom gradients
# -----------------
# ``Unrolled(k, λ)`` (UPG) backpropagates through :math:`k` damped steps
# :math:`h \leftarrow (1-\lambda) h + \lambda F(h)` started at ``h*``;
# ``Neumann(k, λ)`` (NPG) sums :math:`k` terms of the Neumann series of
# :math:`(I - J^\top)^{-1}` with damping; ``OneStep()`` is :math:`k = 1, \lambda = 1`.
# :func:`~gradscope.compare` reports cosine similarity, relative error, inner product
# and norm ratio, overall and per parameter tensor.

for estimator in (gs.Unrolled(5, 0.5), gs.Neumann(5, 0.5), gs.OneStep()):
    estimate = gs.estimate_gradient(problem, g, estimator)
    print(gs.compare(estimate, exact), end="\n\n")

# %%
# A positive inner product (the ``ascent`` column) means the phantom gradient still
# points uphill of the loss, so its negative is a descent direction; Theorem 1 of the
# paper gives a sufficient condition for that (see :doc:`/explanation/phantom_gradients`).

# %%
# How many steps?
# ---------------
# Sweep :math:`k = 1, \dots, 12` for both estimators and both damping values. Each
# estimate costs :math:`k` vector–Jacobian products, against the exact gradient's
# ``exact.cost.vjps``.

steps = list(range(1, 13))
rows = []
for damping in (0.5, 1.0):
    for kind, Estimator in (("UPG", gs.Unrolled), ("NPG", gs.Neumann)):
        for k in steps:
            c = gs.compare(gs.estimate_gradient(problem, g, Estimator(k, damping)), exact)
            rows.append((kind, damping, k, c.cosine, c.relative_error))

fig, (ax_cos, ax_err) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
# Colour: the damping; marker: the estimator (hollow circles UPG, crosses NPG).
styles = {
    ("UPG", 0.5): dict(color="C0", marker="o", mfc="none", ms=9, ls="-"),
    ("NPG", 0.5): dict(color="C0", marker="x", ls="--"),
    ("UPG", 1.0): dict(color="C1", marker="o", mfc="none", ms=9, ls="-"),
    ("NPG", 1.0): dict(color="C1", marker="x", ls="--"),
}
for (kind, damping), style in styles.items():
    sel = [r for r in rows if r[0] == kind and r[1] == damping]
    label = f"{kind}, λ = {damping:g}"
    ax_cos.plot([r[2] for r in sel], [r[3] for r in sel], label=label, **style)
    ax_err.semilogy([r[2] for r in sel], [r[4] for r in sel], label=label, **style)
ax_cos.set(xlabel="steps k", ylabel="cosine to the exact gradient", title="Direction")
ax_err.set(
    xlabel="steps k", ylabel=r"$\|\hat\nabla - \nabla\| \,/\, \|\nabla\|$", title="Relative error"
)
ax_cos.legend()
for ax in (ax_cos, ax_err):
    ax.grid(alpha=0.3)
plt.show()

# %%
# Three things to read off the figure:
#
# * Both estimators converge to the exact gradient as :math:`k` grows: this cell is
#   contractive (:math:`\rho(J) < 1`), so the damped Neumann series converges for
#   every :math:`\lambda \in (0, 1]`.
# * At a fixed :math:`k`, :math:`\lambda = 1` is more accurate here: damping slows the
#   series down (for small :math:`\lambda` the phantom gradient behaves like
#   :math:`k\lambda F_\theta^\top g`, an effective horizon of about :math:`k\lambda`
#   steps). Damping pays off when :math:`J` has eigenvalues far from the unit disk's
#   centre, e.g. negative ones, where the undamped series converges slowly or not at all.
# * The UPG and NPG curves lie on top of each other. That is no accident: at an exact
#   fixed point every unrolled state equals ``h*``, so both compute the same linear map
#   (our derivation, see :doc:`/explanation/phantom_gradients`). The printed gap:

upg = gs.estimate_gradient(problem, g, gs.Unrolled(5, 0.5))
npg = gs.estimate_gradient(problem, g, gs.Neumann(5, 0.5))
print(f"UPG vs NPG at h*: relative difference {gs.compare(upg, npg).relative_error:.2e}")

# %%
# When h* is not a fixed point
# ----------------------------
# A DEQ trained in float32 rarely solves its forward pass tightly. Stop the forward
# solver after a few plain iterations and freeze *that* state. gradscope warns that it
# is not a fixed point, and computes the gradients at the state as given.

import warnings  # noqa: E402

rough = gs.find_fixed_point(cell, x, method=gs.fixed_point.Picard(), max_steps=4, warn=False)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rough_problem = gs.FixedPointProblem.from_module(cell, rough.value, x)
print(caught[0].category.__name__, "-", caught[0].message)

# %%
# Now UPG and NPG differ: UPG takes Jacobians along its own trajectory, NPG freezes them
# at the given state. The gap between the two is itself a diagnostic of the forward
# solve.

for k in (1, 3, 5, 10):
    upg = gs.estimate_gradient(rough_problem, g, gs.Unrolled(k, 0.5))
    npg = gs.estimate_gradient(rough_problem, g, gs.Neumann(k, 0.5))
    print(f"k = {k:2d}: relative difference UPG vs NPG = {gs.compare(upg, npg).relative_error:.2e}")

# %%
# Next steps
# ----------
# * :doc:`plot_02_bring_your_own_deq` plugs in your own model: a module, a plain
#   function, or a TorchDEQ model.
# * :doc:`/howto/choose_estimator_solver` explains the solver choices and per-sample
#   mode.
