"""The monitor's records: tidy rows ``(step, layer, role, estimator, param, metric, value)``."""

from __future__ import annotations

from .._checks import require

__all__ = [
    "COLUMNS",
    "COMPARISON_METRICS",
    "REFERENCE_FAILED",
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


def require_pandas():
    """Import pandas, or say how to install it."""
    return require("pandas", "monitor", "DataFrames of records", "logging")
