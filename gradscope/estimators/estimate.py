r"""Estimate the gradient of an equilibrium: :func:`~gradscope.estimate_gradient` and its result.

Every estimator turns the cotangent ``g = ∂ℓ/∂h*`` into parameter and input gradients
(:ref:`theory-exact-gradient`, :ref:`theory-phantom-gradients`):

================================  ============================================  =============
estimator                         gradient                                      memory
================================  ============================================  =============
:class:`~gradscope.Exact`         ``F_θᵀ u*``, ``(I − Jᵀ)u* = g`` solved        one graph of F
:class:`~gradscope.Unrolled`      backprop through k steps                      k graphs of F
                                  ``h ← (1 − λ)h + λF(h)`` from ``stopgrad(h*)``
:class:`~gradscope.Neumann`       ``λ F_θᵀ Σ_{t<k} (B_λᵀ)^t g``,                one graph of F
                                  ``B_λ = (1 − λ)I + λJ``
:class:`~gradscope.OneStep`       ``F_θᵀ g`` (k = 1, λ = 1; Jacobian-free)       one graph of F
================================  ============================================  =============

The phantom gradients are Geng et al., "On Training Implicit Models", NeurIPS 2021
(UPG and NPG, their eq. 9–10); :class:`~gradscope.OneStep` is Fung et al.'s JFB (AAAI 2022).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import (
    check_like,
    check_tensor,
    fail,
)
from ..operators.jacobian import flatten_params
from ..parametrized import warn_unreached
from ..problem import FixedPointProblem, Params, check_problem
from ..solvers import Solution
from ..status import Status, report
from .base import Adjoint, Estimator, check_estimator, failure_message
from .exact import Exact

__all__ = ["Cost", "GradientEstimate", "estimate_gradient", "run_estimator", "user_gradient"]


@dataclass(frozen=True)
class Cost:
    """What an estimate cost.

    Attributes:
        vjps: vector–Jacobian products through F (a backward through k unrolled steps
            counts k; a batched product counts 1).
        seconds: wall time (CUDA synchronised), including the one forward pass of F that
            builds the graph at h* when the problem had not built it yet (a DEQ backward
            pays it too) and, for :class:`~gradscope.Exact`, the one-VJP sample-independence probe.
        graph_bytes: bytes of the tensors autograd saved for the graph(s) the estimate
            walks (unique storages): the activation memory, on any device.
        peak_cuda_bytes: peak CUDA memory allocated during the estimate (None on CPU).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, 0 * W[0])
        >>> cost = gs.estimate_gradient(problem, torch.ones(2, dtype=torch.float64), gs.Neumann(5, 0.5)).cost
        >>> cost.vjps, cost.seconds >= 0, cost.graph_bytes > 0, cost.peak_cuda_bytes  # None on CPU
        (5, True, True, None)

    """

    vjps: int
    seconds: float
    graph_bytes: int
    peak_cuda_bytes: int | None = None


@dataclass
class GradientEstimate:
    """A gradient of the loss with respect to the parameters (and inputs) of F.

    Attributes:
        grads: parameter gradients keyed like ``named_parameters()``.
        input_grads: one gradient per input (``None`` for non-floating inputs).
        estimator: the estimator that produced it (or a label for a user's gradient).
        adjoint: the adjoint vector u with ``grads = F_θᵀ u`` (every estimator but
            :class:`~gradscope.Unrolled`, which differentiates its trajectory).
        solution: the linear solve behind an :class:`~gradscope.Exact` estimate.
        cost: the :class:`~gradscope.estimators.Cost`.
        status: how the estimate ended (:attr:`~gradscope.Status.SUCCESS`, or a failed
            solve, a growing series, non-finite values).
        series_ratio: the damped series' last term relative to ‖g‖: Neumann's
            ``(B_λᵀ)^(k−1) g``, Unrolled's cotangent carried back to h₀ (> 1: it grew).
        unreached: the parameters that F does not reach (autograd finds no path from
            F's output to them): their gradients in ``grads`` are zeros, not estimates.
            :func:`~gradscope.estimate_gradient` warns about them
            (:class:`~gradscope.UnreachedParameterWarning`).

    Example:
        >>> import torch
        >>> from gradscope.estimators import GradientEstimate
        >>> mine = GradientEstimate.from_grads({"W": torch.ones(2, 2, dtype=torch.float64)}, name="mine")
        >>> mine.name, mine.flat().tolist(), mine.status.ok
        ('mine', [1.0, 1.0, 1.0, 1.0], True)

    """

    grads: Params
    input_grads: tuple[torch.Tensor | None, ...]
    estimator: object
    adjoint: torch.Tensor | None = None
    solution: Solution | None = None
    cost: Cost | None = None
    status: Status = Status.SUCCESS
    series_ratio: float | None = None
    unreached: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Label of the estimator."""
        return getattr(self.estimator, "name", str(self.estimator))

    @property
    def strict(self) -> bool:
        """Whether a failure should raise (the ``strict`` of an :class:`~gradscope.Exact`'s solver)."""
        return isinstance(self.estimator, Estimator) and self.estimator.strict

    def failure_message(self, call: str) -> str:
        """What went wrong (when ``status`` is not ok), for a warning from ``call``."""
        solution = (
            self.solution if self.solution is not None and not self.solution.converged else None
        )
        adjoint = Adjoint(torch.empty(0), self.status, solution, self.series_ratio)
        return failure_message(self.name, adjoint, call)

    def flat(self) -> torch.Tensor:
        """All parameter gradients concatenated (in ``grads`` order)."""
        return flatten_params(self.grads)

    @classmethod
    def from_grads(
        cls,
        grads: Mapping[str, torch.Tensor],
        input_grads: tuple[torch.Tensor | None, ...] = (),
        name: str = "user",
    ) -> GradientEstimate:
        """Wrap gradients computed elsewhere (a user's own training backward) for :func:`~gradscope.compare`."""
        for n, g in grads.items():
            check_tensor("GradientEstimate.from_grads", f"grads[{n!r}]", g)
        return cls(dict(grads), tuple(input_grads), name)

    def __repr__(self) -> str:
        cost = ""
        if self.cost is not None:
            cost = f", vjps={self.cost.vjps}, seconds={self.cost.seconds:.4f}"
        unreached = f", unreached={list(self.unreached)}" if self.unreached else ""
        return f"GradientEstimate({self.name}, params={list(self.grads)}{unreached}{cost})"


def user_gradient(
    module: nn.Module, problem: FixedPointProblem, name: str = "user"
) -> GradientEstimate:
    """Collect the ``.grad`` of ``module``'s parameters that ``problem`` differentiates.

    Use it to judge the gradient a training backward produced (TorchDEQ's phantom
    gradient, say) against :class:`~gradscope.Exact` on the same cotangent. ``module`` must be the
    cell the problem was built from (so the names match). The ``.grad`` values are
    copied, not changed. They include every path of the loss into those parameters:
    compare like with like (the cotangent on h* must be the one the training used).

    Raises:
        ValueError: a parameter has no ``.grad`` or is missing from ``module``.

    Returns:
        A :class:`~gradscope.estimators.GradientEstimate` holding copies of the ``.grad`` values.

    """
    named = dict(module.named_parameters())
    grads = {}
    for n in problem.param_names:
        if n not in named:
            fail(
                "user_gradient",
                f"module has no parameter {n!r}; pass the cell the problem was built from.",
            )
        if named[n].grad is None:
            fail(
                "user_gradient",
                f"parameter {n!r} has no .grad; run the training backward first (and do "
                "not zero the gradients before collecting them).",
            )
        grad = named[n].grad
        assert grad is not None
        grads[n] = grad.detach().clone()
    return GradientEstimate(grads, tuple(None for _ in problem.inputs), name)


@contextlib.contextmanager
def _measure(device: torch.device) -> Iterator[dict]:
    record: dict = {}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    yield record
    if cuda:
        torch.cuda.synchronize(device)
        record["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    record["seconds"] = time.perf_counter() - start


def estimate_gradient(
    problem: FixedPointProblem,
    cotangent: torch.Tensor,
    estimator: Estimator | None = None,
) -> GradientEstimate:
    r"""Estimate ``∇_θ ℓ`` and ``∇_x ℓ`` from the cotangent ``g = ∂ℓ/∂h*``.

    Args:
        problem: the equilibrium.
        cotangent: ``g``, shaped like h* (same dtype and device).
        estimator: :class:`~gradscope.Exact` (default), :class:`~gradscope.Unrolled`,
            :class:`~gradscope.Neumann`, :class:`~gradscope.OneStep` or any
            :class:`~gradscope.Estimator`.

    Returns:
        A :class:`~gradscope.estimators.GradientEstimate`; when its ``status`` is not ok
        (a failed solve, a growing or non-finite series) a
        :class:`~gradscope.ConvergenceWarning` is issued (an :class:`~gradscope.Exact`
        whose solver has ``strict=True`` raises :class:`~gradscope.ConvergenceError`).
        When F does not reach a parameter (its gradient is zeros), one
        :class:`~gradscope.UnreachedParameterWarning` names them all
        (they are listed in the estimate's ``unreached``).

    Raises:
        TypeError, ValueError: bad input (the message says which and how to fix it).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> fn = lambda p, h, x: p["W"] @ h + x
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> h = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W, x)
        >>> problem = gs.FixedPointProblem.from_function(fn, {"W": W}, h, x)
        >>> g = torch.tensor([1.0, -1.0], dtype=torch.float64)
        >>> exact = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense()))
        >>> u = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W.T, g)
        >>> torch.allclose(exact.grads["W"], torch.outer(u, h))
        True

    """
    estimate = run_estimator(problem, cotangent, estimator, call="estimate_gradient")
    warn_unreached("estimate_gradient", estimate.unreached, stacklevel=3)
    if not estimate.status.ok:
        report(estimate.failure_message("estimate_gradient"), strict=estimate.strict)
    return estimate


def run_estimator(
    problem: FixedPointProblem,
    cotangent: torch.Tensor,
    estimator: Estimator | None = None,
    *,
    call: str = "estimate_gradient",
) -> GradientEstimate:
    """:func:`~gradscope.estimate_gradient` without the warning: the status is in the result."""
    check_problem(call, problem)
    estimator = Exact() if estimator is None else estimator
    estimator = check_estimator(call, estimator, "estimator")
    cotangent = check_like(
        call,
        "cotangent",
        cotangent,
        problem.h_star,
        "h*",
        fix="Pass g = ∂ℓ/∂h*, e.g. torch.autograd.grad(loss, h_star).",
    )
    g = cotangent.detach()
    with _measure(problem.device) as record:
        gradient = estimator.gradient(problem, g)
    cost = Cost(
        gradient.vjps, record["seconds"], gradient.graph_bytes, record.get("peak_cuda_bytes")
    )
    adjoint = gradient.adjoint
    return GradientEstimate(
        gradient.grads,
        gradient.input_grads,
        estimator,
        adjoint.value if adjoint is not None else None,
        adjoint.solution if adjoint is not None else None,
        cost,
        gradient.status,
        gradient.series_ratio,
        tuple(gradient.unreached),
    )
