"""The guard that keeps training going: how a monitor handles its failures and its rows.

:class:`Guard` is the base of :class:`~gradscope.GradientMonitor`: an exception is
counted and logged (re-raised with ``raise_errors``), a numerical failure is counted,
logged and recorded, and the rows go to ``records`` (bounded by ``keep_records``) and,
on rank ``writer_rank``, to every sink (a sink that raises loses its rows, counted).
"""

from __future__ import annotations

import logging

from .observation import Observation
from .output import keep, rank

__all__ = ["Guard"]

logger = logging.getLogger("gradscope.monitor")


class Guard:
    """The monitor's failure handling and way out for rows (its state is set by the monitor)."""

    raise_errors: bool
    keep_records: bool | int
    writer_rank: int
    sinks: list
    records: list[dict]
    records_dropped: int
    warnings: int
    last_error: str | None
    _errors: int  # exceptions the monitor caught (the sinks count their own)
    _rows_lost: int  # rows of failed sink writes (the sinks count their own)

    def _count_failures(self, observation: Observation) -> None:
        """Log each numerical failure, count it, and record how many (row ``warnings``)."""
        failures = observation.failures
        if not failures:
            return
        self.warnings += len(failures)
        for failure in failures:
            logger.warning("%s", failure.message)
        observation.add("monitor", "monitor", "warnings", len(failures))

    def _fail(self, error: BaseException, where: str) -> None:
        self._errors += 1
        self.last_error = f"{type(error).__name__}: {error}"
        if self.raise_errors:
            raise error
        logger.error(
            "gradscope.GradientMonitor failed (%s): %s; training goes on.", where, self.last_error
        )

    def _fail_quietly(self, error: Exception, where: str) -> None:
        """Count and log an exception (never raise: close must close everything)."""
        raise_errors, self.raise_errors = self.raise_errors, False
        try:
            self._fail(error, where)
        finally:
            self.raise_errors = raise_errors

    def _emit(self, rows: list[dict]) -> None:
        self.records_dropped += keep(self.records, rows, self.keep_records, self.records_dropped)
        if not self.sinks or rank() != self.writer_rank:
            return
        for sink in self.sinks:
            try:
                sink.write(rows)
            except Exception as error:
                self._rows_lost += len(rows)
                self._fail(error, f"sink {type(sink).__name__}: {len(rows)} rows lost")
