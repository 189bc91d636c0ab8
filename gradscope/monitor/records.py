"""The monitor's records: tidy rows ``(step, layer, role, estimator, param, metric, value)``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._checks import require

__all__ = [
    "COLUMNS",
    "COMPARISON_METRICS",
    "REFERENCE_FAILED",
    "observations_without_reference",
    "require_pandas",
    "row",
]

#: The columns of a record.
COLUMNS = ("step", "layer", "role", "estimator", "param", "metric", "value")
#: The metrics of :func:`~gradscope.compare` recorded per estimator (and per parameter).
COMPARISON_METRICS = ("cosine", "relative_error", "absolute_error", "inner", "norm_ratio")
#: The metric of the row (role ``exact``, value 1) an observation without a trustworthy
#: reference leaves: its exact solve failed (a ``status_<status>`` row says how) or raised
#: (an ``error`` row), or the whole observation failed. Such an observation has no
#: comparisons.
REFERENCE_FAILED = "reference_failed"


def row(step, layer, role, estimator, param, metric, value) -> dict:
    """One record, its fields converted to the types of :data:`~gradscope.monitor.COLUMNS`."""
    return {
        "step": int(step),
        "layer": str(layer),
        "role": role,
        "estimator": str(estimator),
        "param": str(param),
        "metric": metric,
        "value": float(value),
    }


def observations_without_reference(records: Iterable[Mapping]) -> tuple[int, int]:
    """How many observations of the records have no reference, and how many there are.

    An observation is a ``(step, layer)`` pair; it lacks a reference when it holds a
    :data:`REFERENCE_FAILED` row with a nonzero value.

    Returns:
        ``(n, m)``: n of the m observations without a reference.

    """
    observed, failed = set(), set()
    for record in records:
        key = (record["step"], record["layer"])
        observed.add(key)
        if record["metric"] == REFERENCE_FAILED and record["value"] != 0:
            failed.add(key)
    return len(failed), len(observed)


def require_pandas():
    """Import pandas, or say how to install it."""
    return require("pandas", "monitor", "DataFrames of records", "logging")
