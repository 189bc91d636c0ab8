"""One observation: what the monitor measures at an equilibrium and a cotangent.

:func:`measure` builds the :class:`~gradscope.FixedPointProblem`, computes the exact
gradient and every estimator's, compares them, runs the ``extra`` callables and returns the
tidy rows. It knows nothing of hooks, schedules or sinks (``gradscope.monitor.monitor``).

Numerical failures travel as result codes: each estimate's
``status`` is read (nothing is warned, nothing is caught);
a failed one is recorded as a :class:`Failure` and a row ``status_<status>`` = 1. An
inexact h* is not a failure of the monitor: the forward rows ``residual`` and
``converged`` say how good it is.

Each observed quantity (the forward residual, the reference, each estimator, each
``extra``) is measured on its own: one that raises loses only its own rows, leaves a row
``error`` = 1 in their place and an :class:`Error` for the monitor to log and count. A
reference that failed or raised leaves a row ``reference_failed`` = 1
(and the estimators are not compared).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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
from .extras import Extra, extra_name
from .records import COMPARISON_METRICS, REFERENCE_FAILED, row

__all__ = ["Error", "Failure", "Observation", "build_problem", "measure"]


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


@dataclass(frozen=True)
class Error:
    """A quantity of an observation whose computation raised (its rows were dropped).

    Attributes:
        role: the row role of the quantity (``"forward"``, ``"exact"``, ``"estimator"``,
            ``"training"``, ``"extra"``).
        quantity: its label (the estimator's name, the ``extra``'s name).
        error: the exception.

    """

    role: str
    quantity: str
    error: Exception


@dataclass
class Observation:
    """The rows, the failures and the errors of one observation (step and layer fixed).

    With ``raise_errors`` an exception in a quantity propagates instead of being recorded.
    """

    step: int
    layer: str
    rows: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    raise_errors: bool = False

    @contextmanager
    def guard(self, role: str, quantity: str) -> Iterator[None]:
        """Measure one quantity: if it raises, drop its rows and leave an ``error`` row.

        Yields:
            Nothing; the block measures the quantity.

        """
        start = len(self.rows)
        try:
            yield
        except Exception as error:
            if self.raise_errors:
                raise
            del self.rows[start:]
            self.add(role, quantity, "error", 1.0)
            self.errors.append(Error(role, quantity, error))

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
    extra: Extra | Sequence[Extra] | None,
) -> Observation:
    """Measure one observation into ``observation`` (rows, failures, errors); returns it.

    h* is taken as given (its residual is recorded, not checked). Each quantity is
    measured inside :meth:`Observation.guard`; only building the problem can make the
    whole observation fail.

    Returns:
        ``observation``, with the rows added.

    """
    rows = observation
    start = time.perf_counter()
    problem = build_problem(cell, h_star, inputs, params)
    with rows.guard("forward", "forward"):
        _forward_rows(rows, problem, forward)
    reference: GradientEstimate | None = None
    with rows.guard("exact", exact.name):
        solved = rows.estimate("exact", problem, g, exact)
        _exact_rows(rows, solved)
        reference = solved
    if reference is None or not reference.status.ok:
        rows.add("exact", exact.name, REFERENCE_FAILED, 1.0)
    trusted = reference if reference is not None and reference.status.ok else None
    estimators = list(estimators)
    if training is not None and training not in estimators:
        estimators.append(training)
    estimates: dict[str, GradientEstimate] = {}
    if reference is not None:
        estimates[reference.name] = reference
    for estimator in estimators:
        role = "training" if estimator == training else "estimator"
        with rows.guard(role, estimator.name):
            estimate = rows.estimate(role, problem, g, estimator)
            _estimate_rows(rows, role, estimate, trusted, per_param)
            estimates[estimate.name] = estimate
    extras = [] if extra is None else [extra] if callable(extra) else list(extra)
    for each in extras:
        with rows.guard("extra", extra_name(each)):
            values = dict(each(problem, reference, estimates))
            for metric, value in values.items():
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
    exact: GradientEstimate | None,
    per_param: bool,
) -> None:
    """Cost rows, and the comparison with ``exact`` (None: no trustworthy reference)."""
    cost = estimate.cost
    assert cost is not None  # run_estimator always records the cost
    rows.add(role, estimate.name, "vjps", cost.vjps)
    rows.add(role, estimate.name, "seconds", cost.seconds)
    if exact is None:  # no trustworthy reference to compare with
        return
    comparison = compare(estimate, exact)
    for metric in COMPARISON_METRICS:
        rows.add(role, estimate.name, metric, getattr(comparison, metric))
    if per_param:
        for param, agreement in comparison.per_param.items():
            for metric in COMPARISON_METRICS:
                rows.add(role, estimate.name, metric, getattr(agreement, metric), param)
