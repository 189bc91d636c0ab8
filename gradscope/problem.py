"""The fixed-point problem: F, its equilibrium h*, the inputs and the parameters.

A deep equilibrium layer defines its output as the solution of ``h* = F(h*, x; θ)``
(:ref:`theory-setting`). :class:`~gradscope.FixedPointProblem` freezes one such equilibrium so that the
gradient estimators, the operators and the theory checks can look at it without
touching the user's model: parameters enter through :func:`torch.func.functional_call`
as detached aliases, buffers as copies, so no ``.grad`` and no running statistic of the
module changes. Weights derived from parameters are derived from the aliases
(:mod:`gradscope.parametrized`: TorchDEQ's ``apply_norm``, ``torch.nn.utils.parametrize``,
the ``torch.nn.utils.weight_norm`` hook), and every attribute the forward touches is put
back afterwards.

Shapes: a state ``h`` of two or more dimensions is batched, dimension 0 indexing the
samples; a 0-D or 1-D state is one sample.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from ._checks import (
    check_finite,
    check_floating,
    check_positive,
    check_same_dtype_device,
    check_tensor,
    evaluate_map_checked,
    fail,
)
from ._memory import GraphMeter
from .exceptions import CapturedTensorWarning, FixedPointWarning
from .layout import samples_independent
from .parameters import check_params_mapping, chosen_parameters
from .parametrized import functional_call
from .residual import FixedPointResidual, default_fixed_point_rtol, relative_residual

__all__ = ["FixedPointProblem"]

Params = dict[str, torch.Tensor]
#: ``fn(params, h, *inputs) -> next h``: the layer map F with its parameters as a dict.
LayerFn = Callable[..., torch.Tensor]


@dataclass
class Linearization:
    """One autograd graph of F at h*, shared by every VJP that gradscope takes there.

    ``output = F(h, x; θ)`` with ``h``, the parameters and the floating inputs as fresh
    leaves that require grad; each VJP walks this graph again (``retain_graph=True``)
    instead of rebuilding it, so its memory is one graph of F: ``graph_bytes``, the
    bytes autograd saved for it.
    """

    output: torch.Tensor
    h: torch.Tensor
    params: Params
    inputs: tuple[torch.Tensor, ...]
    graph_bytes: int


class FixedPointProblem:
    r"""An equilibrium ``h* = F(h*, x; θ)`` frozen for inspection (immutable).

    Build one with :meth:`from_module` (an :class:`torch.nn.Module` whose
    ``forward(h, *inputs)`` returns the next state) or :meth:`from_function` (a plain
    ``fn(params, h, *inputs)``). Nothing of the module is modified: parameters are used
    through detached aliases and buffers through copies. F is evaluated once at
    construction, to check that it maps a state to a state and to measure the
    ``residual``.

    Args:
        fn: the layer map ``fn(params, h, *inputs) -> next h``.
        h_star: the equilibrium (floating, finite).
        inputs: the inputs x; floating inputs get gradients ("input grads").
        params: the parameters θ to differentiate, a dict of floating tensors.
        rtol: relative fixed-point residual above which h* counts as inexact (default:
            :func:`~gradscope.residual.default_fixed_point_rtol` of the dtype).
        check: issue a :class:`~gradscope.FixedPointWarning` when the residual exceeds
            ``rtol``. Pass ``check=False`` for a state you know is inexact (an
            equilibrium solved loosely during training); the residual is still measured.

    Example:
        >>> import torch, gradscope as gs
        >>> cell = torch.nn.Linear(3, 3).double()
        >>> with torch.no_grad():
        ...     _ = cell.weight.mul_(0.1)
        >>> fp = gs.find_fixed_point(cell, h0=torch.zeros(2, 3, dtype=torch.float64), rtol=1e-12)
        >>> problem = gs.FixedPointProblem.from_module(cell, fp.value)
        >>> problem.residual.max_relative < 1e-8, problem.converged
        (True, True)

    """

    fn: LayerFn
    h_star: torch.Tensor
    inputs: tuple[torch.Tensor, ...]
    params: Params
    rtol: float
    residual: FixedPointResidual
    module: nn.Module | None

    def __init__(
        self,
        fn: LayerFn,
        h_star: torch.Tensor,
        inputs: Iterable[torch.Tensor] = (),
        params: Mapping[str, torch.Tensor] | None = None,
        *,
        rtol: float | None = None,
        check: bool = True,
    ) -> None:
        if params is not None:
            check_params_mapping("FixedPointProblem", params)
        self._build(
            "FixedPointProblem", fn, h_star, tuple(inputs), dict(params or {}), rtol, check, None
        )

    def _build(
        self,
        call: str,
        fn: LayerFn,
        h_star: torch.Tensor,
        inputs: tuple[torch.Tensor, ...],
        params: dict[str, torch.Tensor],
        rtol: float | None,
        check: bool,
        module: nn.Module | None,
    ) -> None:
        if not callable(fn):
            fail(
                call,
                f"fn is a {type(fn).__name__}; expected a callable fn(params, h, *inputs).",
                TypeError,
            )
        h_star = check_tensor(call, "h_star", h_star)
        check_floating(call, "h_star", h_star)
        check_finite(call, "h_star", h_star)
        for i, x in enumerate(inputs):
            check_tensor(call, f"inputs[{i}]", x)
            if x.is_floating_point() or x.is_complex():
                check_finite(call, f"inputs[{i}]", x)
        for name, p in params.items():
            check_tensor(call, f"params[{name!r}]", p)
            check_floating(call, f"params[{name!r}]", p)
            check_finite(call, f"params[{name!r}]", p)
        check_same_dtype_device(
            call,
            "h_star",
            h_star,
            [(f"inputs[{i}]", x) for i, x in enumerate(inputs)]
            + [(f"params[{n!r}]", p) for n, p in params.items()],
        )
        if rtol is not None:
            check_positive(call, "rtol", rtol)
        if not isinstance(check, bool):
            fail(call, f"check={check!r}; expected True or False.", TypeError)
        h_star = h_star.detach()
        inputs = tuple(x.detach() for x in inputs)
        params = {n: p.detach() for n, p in params.items()}
        fh = evaluate_map_checked(call, lambda: fn(params, h_star, *inputs), h_star, inputs, "h*")
        residual = FixedPointResidual(*relative_residual(h_star, fh))
        rtol = default_fixed_point_rtol(h_star.dtype) if rtol is None else rtol
        facts = {
            "fn": fn,
            "h_star": h_star,
            "inputs": inputs,
            "params": params,
            "rtol": rtol,
            "residual": residual,
            "module": module,
        }
        self.__dict__.update(facts)
        if check and not residual.max_relative <= rtol:  # NaN counts as not converged
            warnings.warn(
                f"gradscope.{call}: h* is not a fixed point to rtol={rtol:g}: "
                f"max relative residual ‖F(h*) − h*‖/‖F(h*)‖ = {residual.max_relative:.3e}. "
                "Gradients are computed at this h* as given; solve the forward pass more "
                "tightly (gradscope.find_fixed_point), or pass check=False if you know.",
                FixedPointWarning,
                stacklevel=4,
            )

    def __setattr__(self, name: str, value: object) -> None:
        fail(
            "FixedPointProblem",
            f"cannot set {name!r}: a problem is immutable. Build a new one (for another h*, "
            "FixedPointProblem.from_module or from_function again).",
            AttributeError,
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        h_star: torch.Tensor,
        *inputs: torch.Tensor,
        params: Iterable[str] | None = None,
        rtol: float | None = None,
        check: bool = True,
    ) -> FixedPointProblem:
        """Build the problem of a module whose ``forward(h, *inputs)`` returns the next h.

        F calls the module through :func:`gradscope.parametrized.functional_call`: the
        gradients are those of the leaf parameters (``weight_g``, ``weight_v``,
        ``parametrizations.weight.original0``, …), and weights normalised by TorchDEQ's
        ``apply_norm`` are recomputed from them in F instead of read from the cache that
        ``reset_norm`` fills. The module's attributes are as before after every call.

        Args:
            module: the cell F.
            h_star: the equilibrium.
            *inputs: the inputs x passed after h.
            params: names (as ``named_parameters()`` gives them) of the parameters to
                differentiate; default all that require grad.
            rtol: see :class:`~gradscope.FixedPointProblem`.
            check: see :class:`~gradscope.FixedPointProblem`.

        Returns:
            The problem.

        Raises:
            TypeError: ``module`` is not an ``nn.Module``.
            ValueError: a named parameter does not exist or does not require grad, or the
                module's output is shaped unlike ``h_star``.

        """
        call = "FixedPointProblem.from_module"
        if not isinstance(module, nn.Module):
            fail(
                call,
                f"module is a {type(module).__name__}; expected a torch.nn.Module. "
                "For a plain function use FixedPointProblem.from_function.",
                TypeError,
            )
        chosen = chosen_parameters(call, module, params)
        # Copies, so that a BatchNorm in train mode updates our copy, not the user's stats.
        buffers = {n: b.detach().clone() for n, b in module.named_buffers()}

        def fn(p: Params, h: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:
            # Fresh copies of the buffers at every call: a layer that updates a buffer in
            # place (BatchNorm in train mode: num_batches_tracked += 1, the running
            # statistics) then writes into a tensor made inside the call, which forward-mode
            # transforms (torch.func.jvp) allow, and every call sees the same buffers.
            fresh = {n: b.clone() for n, b in buffers.items()}
            return functional_call(module, {**fresh, **p}, (h, *xs))

        problem = object.__new__(cls)
        problem._build(call, fn, h_star, inputs, chosen, rtol, check, module)
        return problem

    @classmethod
    def from_function(
        cls,
        fn: LayerFn,
        params: Mapping[str, torch.Tensor],
        h_star: torch.Tensor,
        *inputs: torch.Tensor,
        rtol: float | None = None,
        check: bool = True,
    ) -> FixedPointProblem:
        """Build the problem of a plain function ``fn(params, h, *inputs) -> next h``.

        Returns:
            The problem.

        Raises:
            TypeError: ``fn`` is not callable.

        Example:
            >>> import torch, gradscope as gs
            >>> fn = lambda p, h, x: torch.tanh(p["W"] @ h + x)
            >>> p = {"W": 0.1 * torch.eye(2, dtype=torch.float64)}
            >>> x = torch.ones(2, dtype=torch.float64)
            >>> fp = gs.find_fixed_point(lambda h: fn(p, h, x), h0=torch.zeros_like(x))
            >>> gs.FixedPointProblem.from_function(fn, p, fp.value, x).param_names
            ['W']

        """
        call = "FixedPointProblem.from_function"
        if not callable(fn):
            fail(call, f"fn is a {type(fn).__name__}; expected a callable.", TypeError)
        check_params_mapping(call, params)
        problem = object.__new__(cls)
        problem._build(call, fn, h_star, inputs, dict(params), rtol, check, None)
        return problem

    # ------------------------------------------------------------------ evaluation
    def __call__(
        self,
        h: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None,
        inputs: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """Apply F: ``F(h, x; θ)``, with this problem's parameters and inputs by default."""
        return self.fn(
            dict(self.params if params is None else params),
            h,
            *(self.inputs if inputs is None else inputs),
        )

    # ------------------------------------------------------------------ facts
    @property
    def converged(self) -> bool:
        """Whether h* is a fixed point to ``rtol`` (max relative residual ≤ rtol)."""
        return self.residual.max_relative <= self.rtol

    @property
    def param_names(self) -> list[str]:
        """Names of the differentiated parameters, in ``named_parameters()`` order."""
        return list(self.params)

    @property
    def batched(self) -> bool:
        """Whether dimension 0 of h* indexes samples (h* has two or more dimensions)."""
        return self.h_star.dim() >= 2

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of h*."""
        return self.h_star.dtype

    @property
    def device(self) -> torch.device:
        """The device of h*."""
        return self.h_star.device

    @cached_property
    def linearization(self) -> Linearization:
        """The autograd graph of F at h*, built once.

        The output of F with h, θ and the floating inputs as leaves, and the bytes the
        graph holds (``graph_bytes``).
        """
        h = self.h_star.clone().requires_grad_(True)
        params = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
        inputs = tuple(
            x.detach().requires_grad_(True) if x.is_floating_point() else x for x in self.inputs
        )
        meter = GraphMeter()
        with torch.enable_grad(), meter.hooks():
            output = self.fn(params, h, *inputs)
        known = [h, *params.values(), *inputs]
        if self.module is not None:  # a module's other parameters were left out on purpose
            known += list(self.module.parameters())
        _warn_captured(output, known)
        return Linearization(output, h, params, inputs, meter.bytes)

    @cached_property
    def samples_independent(self) -> bool:
        """Whether the samples of a batched h* are independent (J block-diagonal).

        Decided once, with two VJPs (:func:`gradscope.layout.samples_independent`);
        every operator of this problem carries the answer. BatchNorm in train mode,
        attention across the batch and similar layers couple samples.
        """
        lin = self.linearization

        def vjp(v: torch.Tensor) -> torch.Tensor:
            (out,) = torch.autograd.grad(lin.output, lin.h, v, retain_graph=True, allow_unused=True)
            return torch.zeros_like(v) if out is None else out

        return samples_independent(vjp, self.h_star)

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.params.values())
        return (
            f"FixedPointProblem(h*={tuple(self.h_star.shape)}, dtype={self.dtype}, "
            f"device={self.device}, params={len(self.params)} tensors / {n_params} values, "
            f"inputs={len(self.inputs)}, residual={self.residual.max_relative:.2e})"
        )


def _warn_captured(output: torch.Tensor, known: list[torch.Tensor]) -> None:
    """Warn when F's graph reaches leaves that require grad but are none of ``known``."""
    known_ids = {id(t) for t in known}
    seen, stack, captured = set(), [output.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf
        if variable is not None and id(variable) not in known_ids:
            captured.append(tuple(variable.shape))
        stack.extend(next_node for next_node, _ in node.next_functions)
    if captured:
        warnings.warn(
            f"gradscope.FixedPointProblem: F uses {len(captured)} tensor(s) that require grad "
            f"but are not among its params (shapes {captured}): does a closure capture them? "
            "Their gradients are not estimated and compare() does not see them; pass them in "
            "params (fn(params, h, *inputs) reads them from there) or use from_module.",
            CapturedTensorWarning,
            stacklevel=5,
        )


def check_problem(call: str, problem: object) -> FixedPointProblem:
    """Raise a TypeError naming ``call`` unless ``problem`` is a :class:`~gradscope.FixedPointProblem`."""
    if not isinstance(problem, FixedPointProblem):
        fail(
            call,
            f"problem is a {type(problem).__name__}; expected a gradscope.FixedPointProblem.",
            TypeError,
        )
    assert isinstance(problem, FixedPointProblem)
    return problem
