"""The monitor's records: tidy rows ``(step, layer, role, estimator, param, metric, value)``."""

from __future__ import annotations

from .._checks import require

__all__ = ["COLUMNS", "COMPARISON_METRICS", "require_pandas", "row"]

#: The columns of a record.
COLUMNS = ("step", "layer", "role", "estimator", "param", "metric", "value")
#: The metrics of :func:`~gradscope.compare` recorded per estimator (and per parameter).
COMPARISON_METRICS = ("cosine", "relative_error", "absolute_error", "inner", "norm_ratio")


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
