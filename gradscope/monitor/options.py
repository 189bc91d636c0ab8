"""The :class:`~gradscope.GradientMonitor`'s options: checked, and defaulted when omitted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._checks import check_iterable, fail
from ..estimators import Estimator, Exact, Neumann, OneStep, Unrolled, check_estimator
from ..solvers import GMRES
from .extras import Extra
from .schedules import Every, Schedule

__all__ = ["monitor_options"]


def monitor_options(
    call: str,
    estimators: Iterable[Estimator] | None,
    exact: Exact | None,
    schedule: Schedule | None,
    sinks: Iterable,
    extra: Extra | None,
    keep_records: bool | int,
) -> tuple[list[Estimator], Exact, Schedule, list]:
    """Check the monitor's options; fill in the defaults.

    Returns:
        ``(estimators, exact, schedule, sinks)``, with the defaults ``Neumann(5, 0.5)``,
        ``Unrolled(5, 0.5)``, ``OneStep()``; ``Exact(GMRES())``; ``Every(50)``.

    Raises:
        TypeError: an option of the wrong kind.
        ValueError: a negative ``keep_records``.

    """
    if not isinstance(keep_records, int):  # bool is an int
        fail(
            call,
            f"keep_records={keep_records!r}; expected True, False or an int (the rows kept).",
            TypeError,
        )
    if not isinstance(keep_records, bool) and keep_records < 0:
        fail(call, f"keep_records={keep_records}; expected a number of rows ≥ 0.")
    estimators = (
        [Neumann(5, 0.5), Unrolled(5, 0.5), OneStep()]
        if estimators is None
        else check_iterable(call, "estimators", estimators)
    )
    for e in estimators:
        check_estimator(call, e, "estimators")
    exact = Exact(GMRES()) if exact is None else exact
    if not isinstance(exact, Exact):
        fail(call, f"exact={exact!r}; expected gradscope.Exact(solver).", TypeError)
    schedule = Every(50) if schedule is None else schedule
    if not callable(schedule):
        fail(
            call,
            f"schedule={schedule!r}; expected gradscope.monitor.Every(n), LogSpaced(k) or a "
            "callable step -> bool.",
            TypeError,
        )
    if extra is not None and not callable(extra):
        if not isinstance(extra, Sequence) or not all(callable(e) for e in extra):
            fail(
                call,
                f"extra={extra!r}; expected a callable, a list of callables or None.",
                TypeError,
            )
    sinks = check_iterable(call, "sinks", sinks)
    for sink in sinks:
        if not callable(getattr(sink, "write", None)):
            fail(call, f"sink {sink!r} has no write(rows) method.", TypeError)
    return estimators, exact, schedule, sinks
