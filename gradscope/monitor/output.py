"""Where the :class:`~gradscope.GradientMonitor`'s rows go: memory and the sinks.

The monitor holds the state (``records``, ``sinks``, its counts); these functions keep
rows in a bounded ``records`` list, find the rank that writes, close every sink and add
up the sinks' own counts. A failure is handed to the monitor's guard (logged, counted,
never raised into training unless ``raise_errors``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch

__all__ = ["close_sinks", "keep", "rank", "sink_count"]

logger = logging.getLogger("gradscope.monitor")


def keep(records: list[dict], rows: list[dict], keep_records: bool | int, dropped: int) -> int:
    """Keep rows in ``records``, the newest ``keep_records`` of them when an int.

    Args:
        records: the rows kept so far (extended, and cut from the front, in place).
        rows: the new rows.
        keep_records: ``True`` (every row), ``False`` (none) or the number of rows kept.
        dropped: the rows dropped before (the first drop is logged).

    Returns:
        The number of rows dropped now.

    """
    if keep_records is False:
        return 0
    records.extend(rows)
    if keep_records is True:
        return 0
    excess = len(records) - keep_records
    if excess <= 0:
        return 0
    if not dropped:
        logger.info(
            "gradscope.GradientMonitor: more than keep_records=%d rows; the oldest "
            "are dropped from monitor.records (counted in records_dropped; the sinks "
            "have them all).",
            keep_records,
        )
    del records[:excess]
    return excess


def close_sinks(
    sinks: Iterable[object], failed: Callable[[Exception, str], None]
) -> Exception | None:
    """Close every sink; one whose ``close`` raises does not keep the others open.

    Args:
        sinks: the sinks (one without ``close`` is skipped).
        failed: called with each exception and where it happened.

    Returns:
        The first exception, or None.

    """
    first: Exception | None = None
    for sink in sinks:
        close = getattr(sink, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception as error:
            first = first or error
            failed(error, f"closing sink {type(sink).__name__}")
    return first


def sink_count(sinks: Iterable[object], name: str) -> int:
    """The sinks' own counters (``errors``, ``rows_lost``) summed; 0 for a sink without one."""
    total = 0
    for sink in sinks:
        value = getattr(sink, name, 0)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


def rank() -> int:
    """This process's rank under ``torch.distributed`` (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
