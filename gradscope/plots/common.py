"""What every figure shares: the matplotlib/seaborn import, the records frame, saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._checks import fail
from ..monitor.records import REFERENCE_FAILED

__all__ = [
    "comparison_rows",
    "pyplot_and_seaborn",
    "records_frame",
    "reference_note",
    "save",
    "titled",
]


def pyplot_and_seaborn() -> tuple[Any, Any]:
    """Import matplotlib's pyplot and seaborn (inside the call, so gradscope imports light).

    Returns:
        ``(pyplot, seaborn)``.

    """
    import matplotlib.pyplot as plt  # without a display matplotlib picks Agg itself
    import seaborn as sns

    return plt, sns


def records_frame(data: Any) -> Any:
    """The records as a DataFrame, from a monitor or a DataFrame.

    Returns:
        The DataFrame.

    Raises:
        TypeError: ``data`` is neither.

    """
    frame = data.dataframe() if hasattr(data, "dataframe") else data
    if not hasattr(frame, "columns"):
        fail(
            "plots",
            f"got a {type(data).__name__}; expected a GradientMonitor or a DataFrame.",
            TypeError,
        )
    return frame


def comparison_rows(frame: Any, metric: str) -> Any:
    """The whole-model rows of ``metric`` for the compared and training estimators.

    Returns:
        The selected rows.

    """
    rows = frame[(frame["metric"] == metric) & (frame["param"] == "all")]
    return rows[rows["role"].isin(["estimator", "training"])]


def reference_note(frame: Any) -> str:
    """``"n of m observations without a reference"`` when n > 0, else ``""``.

    An observation (a ``(step, layer)`` pair of the records) lacks a reference when its
    exact solve failed or raised: it holds a ``reference_failed`` row and no comparisons,
    so a figure of comparisons leaves it out; the note says how many.

    Returns:
        The note, or ``""`` (none missing, or no monitor records).

    """
    if not {"step", "layer", "metric", "value"} <= set(frame.columns):
        return ""
    observed = frame[["step", "layer"]].drop_duplicates()
    failed = frame[(frame["metric"] == REFERENCE_FAILED) & (frame["value"] != 0)]
    n = len(failed[["step", "layer"]].drop_duplicates())
    return f"{n} of {len(observed)} observations without a reference" if n else ""


def titled(title: str, frame: Any) -> str:
    """``title``, and on a second line the :func:`reference_note` of the records, if any.

    Returns:
        The title.

    """
    note = reference_note(frame)
    return f"{title}\n({note}: not compared)" if note else title


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure as PNG (or by the path's suffix) and close it; returns the path."""
    plt, _ = pyplot_and_seaborn()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
