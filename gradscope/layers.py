r"""An implicit layer that trains with any of gradscope's estimators.

:class:`~gradscope.ImplicitLayer` wraps a cell ``F`` (a module with ``forward(h, *inputs)``) and
returns the equilibrium ``h* = F(h*, x; θ)``. The forward pass solves for ``h*`` under
``torch.no_grad()`` with :func:`~gradscope.find_fixed_point`; the backward pass is the
estimator's (:ref:`theory-exact-gradient`, :ref:`theory-phantom-gradients`):

* :class:`~gradscope.Unrolled` ``(k, λ)`` — the output is ``h_k``, k damped steps
  ``h_{t+1} = (1 − λ)h_t + λF(h_t)`` from ``h_0 = stopgrad(h*)`` taken with autograd on
  (as the paper trains); backward is autograd through the k steps, memory O(k).
* :class:`~gradscope.Exact`, :class:`~gradscope.Neumann`, :class:`~gradscope.OneStep` —
  the output is ``f = F(h*, x; θ)`` evaluated once with grad at a leaf copy of h* (its
  value is h* at a fixed point). A tensor hook on ``f`` replaces the incoming cotangent
  ``g = ∂ℓ/∂f`` by the adjoint ``u`` (Exact: ``(I − Jᵀ)u = g`` solved with gradscope's
  certified :func:`~gradscope.linear_solve`; Neumann: ``u = λ Σ_{t<k} (B_λᵀ)^t g``;
  OneStep: ``u = g``), each ``Jᵀv`` a VJP through the one graph of F; autograd then
  carries ``F_θᵀ u`` into the parameters' ``.grad`` and ``F_xᵀ u`` into the inputs.
  Memory: one graph of F, independent of k (the "hook" pattern of the DEQ code and
  TorchDEQ).

The gradients equal those of :func:`~gradscope.estimate_gradient` on the same ``h*`` and
cotangent (tests/test_layers.py checks this in float64).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import check_positive, check_steps, fail
from .estimators import Exact, Neumann, OneStep, Unrolled, check_estimator
from .exceptions import ConvergenceWarning
from .fixed_point import Anderson, FixedPointResult, Picard, find_fixed_point
from .operators import LinearMap
from .solvers import Solution, linear_solve

__all__ = ["BackwardStats", "ForwardSolver", "ImplicitLayer"]


@dataclass(frozen=True)
class ForwardSolver:
    """How :class:`ImplicitLayer` solves ``h = F(h, x)`` (the arguments of :func:`~gradscope.find_fixed_point`).

    Args:
        method: :class:`~gradscope.Anderson` (default) or :class:`~gradscope.Picard`.
        rtol: relative residual ``‖F(h) − h‖ / ‖F(h)‖`` to stop at (> 0).
        atol: absolute residual to stop at (≥ 0).
        max_steps: iteration budget (≥ 1).
        per_sample: Anderson weights per sample.

    """

    method: Anderson | Picard = field(default_factory=Anderson)
    rtol: float = 1e-4
    atol: float = 0.0
    max_steps: int = 50
    per_sample: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.method, (Anderson, Picard)):
            fail(
                "ForwardSolver",
                f"method={self.method!r}; expected gradscope.Anderson(...) or gradscope.Picard(...).",
                TypeError,
            )
        check_positive("ForwardSolver", "rtol", self.rtol)
        check_positive("ForwardSolver", "atol", self.atol, allow_zero=True)
        check_steps("ForwardSolver", "max_steps", self.max_steps)


@dataclass
class BackwardStats:
    """What the last backward pass of an :class:`ImplicitLayer` did.

    Attributes:
        estimator: label of the estimator.
        vjps: VJPs through F (Jᵀv and the final ``F_θᵀ u`` counted; Unrolled: k).
        seconds: wall time of the adjoint computation inside the hook (0 for Unrolled,
            whose backward is plain autograd).
        solution: the linear solve (Exact only), with its true residual.
        series_ratio: Neumann only: ``‖(B_λᵀ)^{k−1} g‖ / ‖g‖``, the last term's size
            (> 1: the series grew).

    """

    estimator: str
    vjps: int
    seconds: float = 0.0
    solution: Solution | None = None
    series_ratio: float | None = None


#: Called by the layer at each differentiable forward with (layer, h*, output, inputs);
#: may register tensor hooks on ``output`` (they run before the layer's own hook and see
#: the cotangent g = ∂ℓ/∂output).
Observer = Callable[["ImplicitLayer", torch.Tensor, torch.Tensor, tuple], None]


class ImplicitLayer(nn.Module):
    r"""A deep equilibrium layer ``x ↦ h*`` with ``h* = F(h*, x; θ)``, trained with any estimator.

    Args:
        cell: the map F, a module whose ``forward(h, *inputs)`` returns the next state.
        estimator: the backward: :class:`~gradscope.Exact` (solver of your choice),
            :class:`~gradscope.Unrolled`, :class:`~gradscope.Neumann` (default
            ``Neumann(5, 0.5)``) or :class:`~gradscope.OneStep`.
        solver: the forward :class:`ForwardSolver`.
        warn: issue :class:`~gradscope.ConvergenceWarning` when the backward linear solve
            fails or a Neumann series grows (the forward solve never warns; read
            ``last_forward``).

    Attributes:
        last_forward: the :class:`~gradscope.FixedPointResult` of the last forward solve
            (steps, residual, trace).
        last_backward: :class:`BackwardStats` of the last backward pass.

    Example:
        >>> import torch, gradscope as gs
        >>> class Cell(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin = torch.nn.Linear(4, 4)
        ...     def forward(self, h, x):
        ...         return torch.tanh(0.5 * self.lin(h) + x)
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> layer = gs.ImplicitLayer(Cell(), estimator=gs.Neumann(5, 0.5))
        >>> x = torch.randn(8, 4)
        >>> layer(x, h0=torch.zeros(8, 4)).sum().backward()
        >>> layer.last_forward.converged, layer.last_backward.vjps
        (True, 5)

    """

    def __init__(
        self,
        cell: nn.Module,
        estimator: Exact | Unrolled | Neumann | OneStep | None = None,
        solver: ForwardSolver | None = None,
        *,
        warn: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(cell, nn.Module):
            fail(
                "ImplicitLayer",
                f"cell is a {type(cell).__name__}; expected a torch.nn.Module whose "
                "forward(h, *inputs) returns the next state.",
                TypeError,
            )
        estimator = Neumann(5, 0.5) if estimator is None else estimator
        check_estimator("ImplicitLayer", estimator, "estimator")
        solver = ForwardSolver() if solver is None else solver
        if not isinstance(solver, ForwardSolver):
            fail(
                "ImplicitLayer",
                f"solver={solver!r}; expected gradscope.ForwardSolver(...).",
                TypeError,
            )
        self.cell = cell
        self.estimator = estimator
        self.solver = solver
        self.warn = warn
        self.last_forward: FixedPointResult | None = None
        self.last_backward: BackwardStats | None = None
        self._observers: dict[int, Observer] = {}
        self._samples_independent: bool | None = None

    def extra_repr(self) -> str:
        """The estimator, for ``print(model)``."""
        return f"estimator={getattr(self.estimator, 'name', self.estimator)}"

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Register ``observer(layer, h_star, output, inputs)``, called at each differentiable forward.

        Returns:
            A function that removes the observer.

        """
        key = id(observer)
        self._observers[key] = observer
        return lambda: self._observers.pop(key, None)

    def forward(self, *inputs: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """Solve for ``h*`` and return it with the estimator's backward attached.

        Args:
            *inputs: the inputs x, passed to the cell after h.
            h0: the initial state (default: zeros, see :func:`~gradscope.find_fixed_point`).

        Returns:
            ``h*`` (no grad mode), ``h_k`` (Unrolled) or ``F(h*, x)`` with the adjoint hook.

        """
        s = self.solver
        result = find_fixed_point(
            self.cell,
            *inputs,
            h0=h0,
            rtol=s.rtol,
            atol=s.atol,
            max_steps=s.max_steps,
            method=s.method,
            per_sample=s.per_sample,
            warn=False,
        )
        self.last_forward = result
        h_star = result.value
        if not torch.is_grad_enabled():
            return h_star
        estimator = self.estimator
        if isinstance(estimator, Unrolled):
            k, lam = estimator.steps, float(estimator.damping)
            h = h_star
            for _ in range(k):
                fh = self.cell(h, *inputs)
                h = fh if lam == 1.0 else (1 - lam) * h + lam * fh
            self.last_backward = BackwardStats(estimator.name, k)
            self._notify(h_star, h, inputs)
            return h
        h_leaf = h_star.detach().requires_grad_(True)
        f = self.cell(h_leaf, *inputs)
        if not f.requires_grad:  # F does not depend on h nor on anything trainable
            return f
        # The hooks go on an alias of f: the VJPs the hook takes start at f itself, and a
        # hook on f would fire again inside them.
        out = f.view_as(f)
        self._notify(h_star, out, inputs)
        out.register_hook(self._adjoint_hook(f, h_leaf, estimator))
        return out

    def _notify(self, h_star: torch.Tensor, output: torch.Tensor, inputs: tuple) -> None:
        for observer in list(self._observers.values()):
            observer(self, h_star, output, inputs)

    # ------------------------------------------------------------------ backward
    def _adjoint_hook(
        self, f: torch.Tensor, h_leaf: torch.Tensor, estimator: Exact | Neumann | OneStep
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        count = [0]

        def vjp(v: torch.Tensor) -> torch.Tensor:
            count[0] += 1
            (out,) = torch.autograd.grad(f, h_leaf, v, retain_graph=True, allow_unused=True)
            return torch.zeros_like(v) if out is None else out

        def batched_vjp(V: torch.Tensor) -> torch.Tensor:
            return torch.stack([vjp(v) for v in V])

        def hook(g: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            g = g.detach()
            if isinstance(estimator, Exact):
                with warnings.catch_warnings():
                    if not self.warn:
                        warnings.simplefilter("ignore")
                    u, solution = self._solve_adjoint(g, vjp, batched_vjp, estimator, h_leaf)
                stats = BackwardStats(
                    estimator.name, count[0] + 1, time.perf_counter() - start, solution
                )
            else:
                k, lam = estimator.steps, float(estimator.damping)
                v, term = g, g
                for _ in range(k - 1):  # term_t = (B_λᵀ)^t g; v = Σ_{s≤t} term_s
                    term = (1 - lam) * term + lam * vjp(term)
                    v = v + term
                u = lam * v if lam != 1.0 else v
                g_norm = float(torch.linalg.vector_norm(g))
                ratio = float(torch.linalg.vector_norm(term)) / g_norm if g_norm > 0 else 0.0
                if self.warn and k > 1 and (ratio > 1.0 or not bool(torch.isfinite(u).all())):
                    warnings.warn(
                        f"gradscope.ImplicitLayer: the {estimator.name} backward's Neumann terms "
                        f"grew, ‖(B_λᵀ)^(k−1) g‖ / ‖g‖ = {ratio:.3g} > 1: ρ(B_λ) ≥ 1 (lower the "
                        "damping λ) or B_λ is non-normal and its powers have not decayed yet "
                        "(raise k). The gradient is unreliable; compare it with Exact() "
                        "(gradscope.GradientMonitor).",
                        ConvergenceWarning,
                        stacklevel=2,
                    )
                stats = BackwardStats(
                    estimator.name, count[0] + 1, time.perf_counter() - start, None, ratio
                )
            self.last_backward = stats
            return u

        return hook

    def _solve_adjoint(self, g, vjp, batched_vjp, estimator: Exact, h_leaf: torch.Tensor):
        A = LinearMap(
            lambda v: v - vjp(v), g, "I − Jᵀ", batched_matvec=lambda V: V - batched_vjp(V)
        )
        solver = estimator.solver
        per_sample = solver.per_sample
        if per_sample is None:
            per_sample = self._independent(vjp, g)
        solution = linear_solve(A, g, solver, per_sample=per_sample)
        return solution.value, solution

    def _independent(self, vjp, g: torch.Tensor) -> bool:
        """Whether the samples of h* are independent (J block-diagonal); probed once, cached."""
        if g.dim() < 2 or g.shape[0] == 1:
            return g.dim() >= 2
        if self._samples_independent is None:
            generator = torch.Generator().manual_seed(
                0
            )  # a private generator: global RNG untouched
            probe = torch.zeros_like(g)
            probe[0] = torch.randn(probe[0].shape, generator=generator, dtype=g.dtype).to(g)
            out = vjp(probe)
            leak = float(torch.linalg.vector_norm(out[1:]))
            scale = float(torch.linalg.vector_norm(out[0]) + torch.linalg.vector_norm(probe))
            self._samples_independent = leak <= 1e3 * torch.finfo(g.dtype).eps * scale
        return self._samples_independent
