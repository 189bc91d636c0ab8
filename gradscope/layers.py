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
  certified :func:`~gradscope.solvers.linear_solve`; Neumann: ``u = λ Σ_{t<k} (B_λᵀ)^t g``;
  OneStep: ``u = g``), each ``Jᵀv`` a VJP through the one graph of F; autograd then
  carries ``F_θᵀ u`` into the parameters' ``.grad`` and ``F_xᵀ u`` into the inputs.
  Memory: one graph of F, independent of k (the "hook" pattern of the DEQ code and
  TorchDEQ).

The gradients equal those of :func:`~gradscope.estimate_gradient` on the same ``h*`` and
cotangent (tests/test_layers.py checks this in float64).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import check_bool, check_finite, check_positive, check_steps, check_tensor, fail
from .estimators import Estimator, Neumann, Unrolled, check_estimator
from .estimators.base import Adjoint, as_adjoint, failure_message
from .estimators.unrolled import trajectory_ratio, unrolled_status
from .fixed_point import Anderson, FixedPointResult, Picard, find_fixed_point
from .operators import Counted, JacobianTranspose
from .solvers import Solution
from .status import Status, report

__all__ = ["BackwardStats", "ForwardSolver", "ImplicitLayer"]


@dataclass(frozen=True)
class ForwardSolver:
    """How :class:`~gradscope.ImplicitLayer` solves ``h = F(h, x)`` (the arguments of :func:`~gradscope.find_fixed_point`).

    Args:
        method: :class:`~gradscope.fixed_point.Anderson` (default) or :class:`~gradscope.fixed_point.Picard`.
        rtol: relative residual ``‖F(h) − h‖ / ‖F(h)‖`` to stop at (> 0).
        atol: absolute residual to stop at (≥ 0).
        max_steps: iteration budget (≥ 1).
        per_sample: Anderson weights per sample.

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.layers import ForwardSolver
        >>> cell = torch.nn.Linear(2, 2).double()
        >>> _ = torch.nn.init.constant_(cell.weight, 0.25), torch.nn.init.constant_(cell.bias, 1.0)
        >>> solver = ForwardSolver(gs.fixed_point.Picard(damping=0.9), rtol=1e-10, max_steps=100)
        >>> h = gs.ImplicitLayer(cell, solver=solver)(h0=torch.zeros(2, dtype=torch.float64))
        >>> h.round(decimals=6).tolist()  # h* = 0.5 h* + 1
        [2.0, 2.0]

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
                f"method={self.method!r}; expected gradscope.fixed_point.Anderson(...) or gradscope.fixed_point.Picard(...).",
                TypeError,
            )
        check_positive("ForwardSolver", "rtol", self.rtol)
        check_positive("ForwardSolver", "atol", self.atol, allow_zero=True)
        check_steps("ForwardSolver", "max_steps", self.max_steps)
        check_bool("ForwardSolver", "per_sample", self.per_sample)


@dataclass
class BackwardStats:
    """What the last backward pass of an :class:`~gradscope.ImplicitLayer` did.

    Attributes:
        estimator: label of the estimator.
        vjps: VJPs through F (Jᵀv and the final ``F_θᵀ u`` counted; Unrolled: k).
        seconds: wall time of the adjoint computation inside the hook (0 for Unrolled,
            whose backward is plain autograd).
        solution: the linear solve (Exact only), with its true residual.
        series_ratio: Neumann only: ``‖(B_λᵀ)^{k−1} g‖ / ‖g‖``, the last term's size
            (> 1: the series grew).
        status: how the adjoint computation ended (Unrolled: always
            :attr:`~gradscope.Status.SUCCESS`, its backward is plain autograd).

    Example:
        >>> import torch, gradscope as gs
        >>> cell = torch.nn.Linear(2, 2).double()
        >>> _ = torch.nn.init.constant_(cell.weight, 0.25), torch.nn.init.constant_(cell.bias, 1.0)
        >>> layer = gs.ImplicitLayer(cell, estimator=gs.Neumann(5, 0.5))
        >>> layer(h0=torch.zeros(2, dtype=torch.float64)).sum().backward()
        >>> stats = layer.last_backward
        >>> stats.estimator, stats.vjps, stats.status.ok
        ('Neumann(5, 0.5)', 5, True)

    """

    estimator: str
    vjps: int
    seconds: float = 0.0
    solution: Solution | None = None
    series_ratio: float | None = None
    status: Status = Status.SUCCESS


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
        solver: the forward :class:`~gradscope.layers.ForwardSolver`.
        warn: issue :class:`~gradscope.ConvergenceWarning` when the backward linear solve
            fails or a damped series grows or turns non-finite (the forward solve never
            warns; read ``last_forward``).
        strict: raise :class:`~gradscope.ConvergenceError` from the backward instead (also
            when the estimator's own solver has ``strict=True``). For the adjoint-based
            estimators it raises before any ``.grad`` is written; :class:`~gradscope.Unrolled`
            can only judge its series at the end of its backward, when some ``.grad`` may
            already hold values: zero them when you catch the error.

    Attributes:
        last_forward: the :class:`~gradscope.fixed_point.FixedPointResult` of the last forward solve
            (steps, residual, trace).
        last_backward: :class:`~gradscope.layers.BackwardStats` of the last backward pass.

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
        estimator: Estimator | None = None,
        solver: ForwardSolver | None = None,
        *,
        warn: bool = True,
        strict: bool = False,
    ) -> None:
        super().__init__()
        check_bool("ImplicitLayer", "warn", warn)
        check_bool("ImplicitLayer", "strict", strict)
        if not isinstance(cell, nn.Module):
            fail(
                "ImplicitLayer",
                f"cell is a {type(cell).__name__}; expected a torch.nn.Module whose "
                "forward(h, *inputs) returns the next state.",
                TypeError,
            )
        estimator = check_estimator(
            "ImplicitLayer", Neumann(5, 0.5) if estimator is None else estimator
        )
        solver = ForwardSolver() if solver is None else solver
        if not isinstance(solver, ForwardSolver):
            fail(
                "ImplicitLayer",
                f"solver={solver!r}; expected gradscope.layers.ForwardSolver(...).",
                TypeError,
            )
        self.cell = cell
        self.estimator = estimator
        self.solver = solver
        self.warn = warn
        self.strict = strict
        self.last_forward: FixedPointResult | None = None
        self.last_backward: BackwardStats | None = None
        self._observers: dict[int, Observer] = {}

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

        def remove() -> None:
            self._observers.pop(key, None)

        return remove

    def forward(self, *inputs: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """Solve for ``h*`` and return it with the estimator's backward attached.

        Args:
            *inputs: the inputs x, passed to the cell after h.
            h0: the initial state (default: zeros, see :func:`~gradscope.find_fixed_point`).

        Returns:
            ``h*`` (no grad mode), ``h_k`` (Unrolled) or ``F(h*, x)`` with the adjoint hook.

        """
        for i, x in enumerate(inputs):
            check_tensor("ImplicitLayer", f"inputs[{i}]", x)
            if x.is_floating_point() or x.is_complex():
                check_finite("ImplicitLayer", f"inputs[{i}]", x)
        if h0 is not None:
            check_tensor("ImplicitLayer", "h0", h0)
            if h0.is_floating_point():
                check_finite("ImplicitLayer", "h0", h0)
        s = self.solver
        try:
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
        except (TypeError, ValueError) as error:  # say whose input it was
            raise type(error)(
                f"gradscope.ImplicitLayer: the forward solve refused: {error}"
            ) from None
        self.last_forward = result
        h_star = result.value
        if not torch.is_grad_enabled():
            return h_star
        estimator = self.estimator
        if isinstance(estimator, Unrolled):
            return self._unrolled_forward(estimator, h_star, inputs)
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

    def _unrolled_forward(
        self, estimator: Unrolled, h_star: torch.Tensor, inputs: tuple
    ) -> torch.Tensor:
        """``h_k`` from a leaf copy of h*, with hooks that judge the backward's growth.

        The gradient that reaches the leaf h₀ is the cotangent carried back through the k
        steps, ``(∏ B_tᵀ) g``: its size relative to g is the series ratio, at the cost of
        one more partial derivative in the backward.

        Returns:
            ``h_k``, differentiable in the parameters and the inputs through the k steps.

        """
        h0 = h_star.detach().requires_grad_(True)
        h = estimator.unroll(lambda h: self.cell(h, *inputs), h0)
        stats = BackwardStats(estimator.name, estimator.steps)
        self.last_backward = stats
        self._notify(h_star, h, inputs)
        cotangent: list[torch.Tensor] = []

        def keep_cotangent(g: torch.Tensor) -> None:
            cotangent[:] = [g.detach()]

        def judge(g_h0: torch.Tensor) -> None:
            if not cotangent:
                return
            stats.series_ratio = trajectory_ratio(cotangent[0], g_h0)
            stats.status = unrolled_status(estimator.steps, stats.series_ratio, [g_h0])
            if (self.warn or self.strict) and not stats.status.ok:
                adjoint = Adjoint(g_h0, stats.status, series_ratio=stats.series_ratio)
                report(
                    failure_message(estimator.name, adjoint, "ImplicitLayer"), strict=self.strict
                )

        if h.requires_grad:
            h.register_hook(keep_cotangent)
            h0.register_hook(judge)
        return h

    # ------------------------------------------------------------------ backward
    def _adjoint_hook(
        self, f: torch.Tensor, h_leaf: torch.Tensor, estimator: Estimator
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(g: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            g = g.detach()
            # Jᵀ through the one graph of F at h*; whether samples are independent is
            # probed (one VJP) only if the estimator's solver asks, at every backward, so
            # that it follows the parameters.
            JT = Counted(JacobianTranspose(f, h_leaf))
            adjoint = as_adjoint(estimator.adjoint(JT, g), estimator.name, g)
            self.last_backward = BackwardStats(
                estimator.name,
                JT.count + 1,
                time.perf_counter() - start,
                adjoint.solution,
                adjoint.series_ratio,
                adjoint.status,
            )
            strict = self.strict or estimator.strict
            if (self.warn or strict) and not adjoint.status.ok:
                report(failure_message(estimator.name, adjoint, "ImplicitLayer"), strict=strict)
            return adjoint.value

        return hook
