"""One observation: what the monitor measures at an equilibrium and a cotangent.

:func:`measure` builds the :class:`~gradscope.FixedPointProblem`, computes the exact
gradient and every estimator's, compares them, runs the ``extra`` callable and returns the
tidy rows. It knows nothing of hooks, schedules or sinks (``gradscope.monitor.monitor``).

Numerical failures travel as result codes: each estimate's
``status`` is read (nothing is warned, nothing is caught);
a failed one is recorded as a :class:`Failure` and a row ``status_<status>`` = 1. An
inexact h* is not a failure of the monitor: the forward rows ``residual`` and
``converged`` say how good it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import fail
from ..estimators import Estimator, Exact, GradientEstimate
from ..estimators.estimate import run_estimator
from ..exceptions import ConvergenceError
from ..fixed_point import FixedPointResult
from ..metrics import compare
from ..problem import FixedPointProblem
from ..status import Status
from .extras import Extra
from .records import COMPARISON_METRICS, row

__all__ = ["Failure", "Observation", "build_problem", "measure"]


@dataclass(frozen=True)
class Failure:
    """A quantity of an observation whose computation did not succeed.

    Attributes:
        role: the row role of the quantity (``"exact"``, ``"estimator"``, ``"training"``).
        quantity: its label (the estimator's name).
        status: how it ended.
        message: what went wrong and what to try.

    """

    role: str
    quantity: str
    status: Status
    message: str


@dataclass
class Observation:
    """The rows and the failures of one observation (step and layer fixed)."""

    step: int
    layer: str
    rows: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def add(self, role: str, estimator: str, metric: str, value, param: str = "all") -> None:
        """Append the row ``(step, layer, role, estimator, param, metric, value)``."""
        self.rows.append(row(self.step, self.layer, role, estimator, param, metric, value))

    def estimate(self, role: str, problem, g, estimator: Estimator) -> GradientEstimate:
        """Run ``estimator`` and record its failure, if its status is not ok.

        Returns:
            The estimate, whatever its status.

        Raises:
            ConvergenceError: it failed and its solver is ``strict``.

        """
        estimate = run_estimator(problem, g, estimator, call="GradientMonitor.observe")
        status = estimate.status
        if not status.ok:
            message = estimate.failure_message(f"GradientMonitor (step {self.step}, {self.layer})")
            if estimate.strict:
                raise ConvergenceError(message)
            self.failures.append(Failure(role, estimate.name, status, message))
            self.add(role, estimate.name, f"status_{status.value}", 1.0)
        return estimate


def build_problem(
    cell: nn.Module | Callable[..., torch.Tensor],
    h_star: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    params: Mapping[str, torch.Tensor] | None,
) -> FixedPointProblem:
    """The problem of a module cell, or of a function cell with its ``params``."""
    if isinstance(cell, nn.Module) and params is None:
        return FixedPointProblem.from_module(cell, h_star, *inputs, check=False)
    if params is None:
        fail(
            "GradientMonitor.observe",
            "cell is a function but params is None; expected the dict of parameters "
            "fn(params, h, *inputs) differentiates.",
            TypeError,
        )
    return FixedPointProblem.from_function(cell, dict(params), h_star, *inputs, check=False)


def measure(
    cell: nn.Module | Callable[..., torch.Tensor],
    h_star: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    g: torch.Tensor,
    params: Mapping[str, torch.Tensor] | None,
    *,
    observation: Observation,
    exact: Exact,
    estimators: Sequence[Estimator],
    training: Estimator | None,
    forward: FixedPointResult | None,
    per_param: bool,
    extra: Extra | None,
) -> Observation:
    """Measure one observation into ``observation`` (rows and failures); returns it.

    h* is taken as given (its residual is recorded, not checked).

    Returns:
        ``observation``, with the rows added.

    """
    rows = observation
    start = time.perf_counter()
    problem = build_problem(cell, h_star, inputs, params)
    _forward_rows(rows, problem, forward)
    reference = rows.estimate("exact", problem, g, exact)
    _exact_rows(rows, reference)
    estimators = list(estimators)
    if training is not None and training not in estimators:
        estimators.append(training)
    estimates: dict[str, GradientEstimate] = {reference.name: reference}
    for estimator in estimators:
        role = "training" if estimator == training else "estimator"
        estimate = rows.estimate(role, problem, g, estimator)
        estimates[estimate.name] = estimate
        _estimate_rows(rows, role, estimate, reference, per_param)
    if extra is not None:
        for metric, value in dict(extra(problem, reference, estimates)).items():
            rows.add("extra", "extra", str(metric), float(value))
    rows.add("monitor", "monitor", "seconds", time.perf_counter() - start)
    return observation


def _forward_rows(
    rows: Observation, problem: FixedPointProblem, forward: FixedPointResult | None
) -> None:
    """The residual of h*; converged: the forward solve's verdict, else the problem's own."""
    rows.add("forward", "forward", "residual", problem.residual.max_relative)
    if forward is not None:
        rows.add("forward", "forward", "steps", forward.steps)
    converged = forward.converged if forward is not None else problem.converged
    rows.add("forward", "forward", "converged", float(converged))


def _exact_rows(rows: Observation, exact: GradientEstimate) -> None:
    solution, cost = exact.solution, exact.cost
    # run_estimator always records the cost, and an Exact estimate always carries its solve.
    assert solution is not None and cost is not None
    for metric, value in (
        ("converged", float(solution.converged)),
        ("residual", solution.residual),
        ("steps", solution.steps),
        ("vjps", cost.vjps),
        ("seconds", cost.seconds),
        ("grad_norm", float(exact.flat().norm()) if exact.grads else 0.0),
    ):
        rows.add("exact", exact.name, metric, value)


def _estimate_rows(
    rows: Observation,
    role: str,
    estimate: GradientEstimate,
    exact: GradientEstimate,
    per_param: bool,
) -> None:
    cost = estimate.cost
    assert cost is not None  # run_estimator always records the cost
    rows.add(role, estimate.name, "vjps", cost.vjps)
    rows.add(role, estimate.name, "seconds", cost.seconds)
    if not exact.status.ok:  # no trustworthy reference to compare with
        return
    comparison = compare(estimate, exact)
    for metric in COMPARISON_METRICS:
        rows.add(role, estimate.name, metric, getattr(comparison, metric))
    if per_param:
        for param, agreement in comparison.per_param.items():
            for metric in COMPARISON_METRICS:
                rows.add(role, estimate.name, metric, getattr(agreement, metric), param)
