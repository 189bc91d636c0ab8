"""
Bringing your own DEQ
=====================

gradscope looks at *your* equilibrium model; it does not ask you to rewrite it. All it
needs is the layer map :math:`F` and a state :math:`h^\\star` to look at. This
tutorial plugs in the three usual shapes of a model:

1. an :class:`torch.nn.Module` whose ``forward(h, *inputs)`` returns the next state
   (:meth:`FixedPointProblem.from_module <gradscope.FixedPointProblem.from_module>`);
2. a plain function ``fn(params, h, *inputs)`` with its parameters in a dict
   (:meth:`FixedPointProblem.from_function <gradscope.FixedPointProblem.from_function>`),
   checked against a closed form;
3. a `TorchDEQ <https://github.com/locuslab/torchdeq>`_ model, whose own phantom
   gradient (left in ``.grad`` by its training backward) is judged with
   :func:`~gradscope.estimators.user_gradient`.
"""

# %%
# 1. A module
# -----------
# Any module whose ``forward`` takes the state first and the inputs after it. Here a
# cell with a residual connection and a LayerNorm-free MLP; the batch dimension is
# dimension 0, and gradscope treats the samples as independent (it checks that).

import torch

import gradscope as gs

torch.manual_seed(0)


class MLPCell(torch.nn.Module):
    """F(h, x) = 0.5 h + 0.5 tanh(W₂ relu(W₁ h + U x))."""

    def __init__(self, d: int = 24, n: int = 8, hidden: int = 48) -> None:
        super().__init__()
        self.W1 = torch.nn.Linear(d, hidden)
        self.U = torch.nn.Linear(n, hidden, bias=False)
        self.W2 = torch.nn.Linear(hidden, d)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * h + 0.5 * torch.tanh(self.W2(torch.relu(self.W1(h) + self.U(x))))


cell = MLPCell().double()
x = torch.randn(10, 8, dtype=torch.float64)
fp = gs.find_fixed_point(cell, x, h0=torch.zeros(10, 24, dtype=torch.float64), rtol=1e-12)
problem = gs.FixedPointProblem.from_module(cell, fp.value, x)
print(fp)
print("parameters:", problem.param_names)
print("batched:", problem.batched, "| samples independent:", problem.samples_independent)

# %%
# To study only some parameters, name them (as ``named_parameters()`` spells them).
# Diagnostics never change what they observe: the module's ``.grad`` stays untouched.

g = torch.randn_like(fp.value)
only_w2 = gs.FixedPointProblem.from_module(cell, fp.value, x, params=["W2.weight", "W2.bias"])
exact = gs.estimate_gradient(only_w2, g, gs.Exact())
print(gs.compare(gs.estimate_gradient(only_w2, g, gs.Neumann(5, 0.5)), exact))
print("cell.W2.weight.grad is still", cell.W2.weight.grad)

# %%
# A module whose ``forward`` has another signature (input first, keyword arguments,
# a state inside a tuple) is wrapped in a function instead, with
# :func:`torch.func.functional_call` putting the parameters in; see the next section.

# %%
# 2. A plain function
# -------------------
# ``fn(params, h, *inputs)`` with ``params`` a dict of tensors: the layout of
# :func:`torch.func.functional_call`. To see that the exact gradient is exact, take a
# *linear* layer :math:`F(h, x) = W h + x` on a single sample (a 1-D state). Then
# :math:`h^\star = (I - W)^{-1} x` and, for a cotangent :math:`g`,
# :math:`\nabla_W \ell = u\, h^{\star\top}` with :math:`u = (I - W^\top)^{-1} g`:
# a closed form to check against.


def linear_layer(params: dict[str, torch.Tensor], h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return params["W"] @ h + x


d = 6
W = 0.8 * torch.linalg.qr(torch.randn(d, d, dtype=torch.float64)).Q  # ‖W‖₂ = 0.8
x1 = torch.randn(d, dtype=torch.float64)
eye = torch.eye(d, dtype=torch.float64)
h_star = torch.linalg.solve(eye - W, x1)

problem_fn = gs.FixedPointProblem.from_function(linear_layer, {"W": W}, h_star, x1)
g1 = torch.randn(d, dtype=torch.float64)
exact_fn = gs.estimate_gradient(problem_fn, g1, gs.Exact(gs.solvers.GMRES(rtol=1e-12)))

u = torch.linalg.solve(eye - W.T, g1)
closed_form = gs.estimators.GradientEstimate.from_grads(
    {"W": torch.outer(u, h_star)}, (u,), name="closed form"
)
print(gs.compare(exact_fn, closed_form))

# %%
# The input gradient :math:`\nabla_x \ell = F_x^\top u = u` is checked too (the
# ``input[0]`` row). The same pattern wraps a module with an unusual signature:
#
# .. code-block:: python
#
#     params = {n: p for n, p in model.named_parameters() if p.requires_grad}
#
#     def fn(params, h, x):
#         return torch.func.functional_call(model, params, (x,), {"state": h})
#
#     problem = gs.FixedPointProblem.from_function(fn, params, h_star, x)

# %%
# 3. A TorchDEQ model
# -------------------
# TorchDEQ trains DEQs with its own forward solvers and backward gradients; with
# ``grad=5, tau=0.5`` its training backward is the unrolled phantom gradient
# UPG(5, 0.5). gradscope can tell how close that gradient is to the exact one, on the
# same cotangent. The loss here is linear in the output, :math:`\ell = \langle c,
# z\rangle`, so the cotangent is :math:`c` wherever it is evaluated.
#
# This section runs only where ``torchdeq`` is installed
# (``pip install "gradscope[torchdeq]"``).

try:
    from torchdeq import get_deq
except ImportError:  # the rest of the tutorial does not need it
    get_deq = None
    print("torchdeq is not installed; skipping the TorchDEQ section.")

if get_deq is not None:

    class TanhCell(torch.nn.Module):
        """F(z, x) = tanh(W z + U x + b)."""

        def __init__(self, d: int = 32, n: int = 16) -> None:
            super().__init__()
            self.W = torch.nn.Linear(d, d, bias=False)
            self.U = torch.nn.Linear(n, d)

        def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.W(z) + self.U(x))

    tcell = TanhCell().double()
    xb = torch.randn(8, 16, dtype=torch.float64)
    deq = get_deq(f_solver="anderson", f_max_iter=100, f_tol=1e-12, grad=5, tau=0.5)
    deq.train()

    # One training step as TorchDEQ runs it: forward solve, phantom backward.
    z_out, info = deq(lambda z: tcell(z, xb), torch.zeros(8, 32, dtype=torch.float64))
    c = torch.randn(8, 32, dtype=torch.float64)
    (c * z_out[-1]).sum().backward()
    print(f"TorchDEQ forward residual (relative): {info['rel_lowest'].max():.1e}")

    # gradscope: the same cell at its equilibrium, the same cotangent.
    tfp = gs.find_fixed_point(tcell, xb, rtol=1e-12)
    tproblem = gs.FixedPointProblem.from_module(tcell, tfp.value, xb)
    theirs = gs.estimators.user_gradient(tcell, tproblem, name="TorchDEQ grad=5, tau=0.5")
    texact = gs.estimate_gradient(tproblem, c, gs.Exact())
    print(gs.compare(theirs, texact))

# %%
# Read the direction off the cosine and the size off the norm ratio: here the phantom
# gradient is well aligned with the exact one and somewhat shorter. As a consistency
# check, gradscope's own ``Unrolled(5, 0.5)`` on the same cotangent reproduces
# TorchDEQ's gradient, up to the difference between the two forward solves (both start
# their unrolling from their own ``h*``):

if get_deq is not None:
    ours = gs.estimate_gradient(tproblem, c, gs.Unrolled(5, 0.5))
    print(
        f"TorchDEQ vs gradscope Unrolled(5, 0.5): relative difference "
        f"{gs.compare(theirs, ours).relative_error:.1e}"
    )

# %%
# Two remarks for real models:
#
# * :func:`~gradscope.estimators.user_gradient` copies ``.grad``, which holds *every* path of the
#   loss into the parameters. Compare like with like: the cotangent you hand
#   :func:`~gradscope.estimate_gradient` must be the one the training used on the DEQ
#   output (for a non-linear loss, take it with ``torch.autograd.grad(loss, z)``), and
#   no other term of the loss should reach the cell's parameters.
# * TorchDEQ's default forward tolerance is ``f_tol=1e-3``. A state solved that loosely
#   is not a fixed point to gradscope's default tolerance; :class:`~gradscope.FixedPointProblem`
#   then warns with :class:`~gradscope.FixedPointWarning` and computes the gradients at
#   the state as given (pass ``rtol=`` to accept it).
