"""The file sinks: CSV and JSON lines, and the file handling that keeps training safe.

The file sinks never raise into training for a failing disk: a write or a close that
fails (``OSError``: a full disk, a folder deleted mid-run) is logged on the
``gradscope.monitor`` logger and counted on the sink (``errors``, ``rows_lost``), and
the :class:`~gradscope.GradientMonitor` adds those counts to its own. A write that fails
midway is cut back to the last complete row, and a file whose tail was torn by an
earlier run (killed mid-row) is cut back the same way before rows are appended, so
that :func:`~gradscope.monitor.read_records` never meets a torn row in the middle of a file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .reading import csv_complete, json_record
from .records import COLUMNS

__all__ = ["CSVSink", "JSONLSink"]

logger = logging.getLogger("gradscope.monitor")

_CHUNK = 1 << 20
_TAIL = 1 << 22


def _complete_length(path: Path, csv_quoting: bool) -> int:
    """The length of the file's longest prefix that ends with a complete record.

    Reads the file once in chunks (to count quotes) and its tail; a file that ends with
    a complete record, the usual case, is not cut.

    Returns:
        The length in bytes (the file's size when nothing is torn).

    """
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        file.seek(size - 1)
        last = file.read(1)
        quotes = 0
        if csv_quoting:
            file.seek(0)
            for chunk in iter(lambda: file.read(_CHUNK), b""):
                quotes += chunk.count(b'"')
        if last == b"\n" and quotes % 2 == 0:
            return size
        start = max(0, size - _TAIL)
        while True:
            file.seek(start)
            tail = file.read()
            if csv_quoting:
                found = csv_complete(tail, quotes - tail.count(b'"'))
            else:
                found = tail.rfind(b"\n") + 1 or None
            if found is not None:
                return start + found
            if start == 0:
                return 0
            start = 0  # a record longer than the tail: look at the whole file


class _FileSink:
    """What the CSV and JSON-lines sinks share: opening, counting, surviving the disk."""

    _newline: str | None = None
    _csv = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        #: failed writes, closes and files lost, each logged.
        self.errors = 0
        #: rows that did not reach the file, or were written to a file since deleted.
        self.rows_lost = 0
        #: rows written (and flushed) to the file.
        self.rows_written = 0
        self._file: IO[str] | None = None
        self._size = 0  # the file's size after the last complete write
        self._rows_in_file = 0  # rows this sink wrote to the file it has open

    # -------------------------------------------------------------- subclass hooks
    def _format(self, rows: Sequence[dict]) -> str:
        raise NotImplementedError

    def _header(self) -> str:
        return ""

    # -------------------------------------------------------------- writing
    def write(self, rows: Sequence[dict]) -> None:
        """Write rows (a failing disk is logged and counted, never raised)."""
        rows = list(rows)
        if not rows:
            return
        text = self._format(rows)  # before touching the file: a bad row raises here
        self._still_there()
        try:
            if self._file is None and self._open():
                text = self._header() + text
        except OSError as error:
            self._failed(f"could not open the file for {len(rows)} rows", error, lost=len(rows))
            self._discard(truncate=False)
            return
        assert self._file is not None  # opened above
        try:
            self._file.write(text)
            self._file.flush()
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError as error:
            self._failed(f"could not write {len(rows)} rows", error, lost=len(rows))
            self._discard()  # and cut off what the failed write left
            return
        self._rows_in_file += len(rows)
        self.rows_written += len(rows)

    def close(self) -> None:
        """Close the file (a failing close is logged and counted, never raised)."""
        if self._file is None:
            return
        self._still_there(closing=True)
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as error:
            self._failed("could not close the file", error, lost=0)

    # -------------------------------------------------------------- internals
    def _open(self) -> bool:
        """Open the file for appending; True when it is new (it needs a header)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", encoding="utf-8", newline=self._newline)
        self._size = os.fstat(self._file.fileno()).st_size
        self._rows_in_file = 0
        return new

    def _repair(self) -> None:
        """Cut a torn tail (a run killed mid-row) off an existing file before appending."""
        if not self.path.is_file():
            return
        complete = _complete_length(self.path, csv_quoting=self._csv)
        size = self.path.stat().st_size
        if complete < size and not self._csv:
            with self.path.open("rb") as file:
                file.seek(complete)
                if json_record(file.read()) is not None:  # a whole record without its newline
                    with self.path.open("ab") as appended:
                        appended.write(b"\n")
                    return
        if complete < size:
            os.truncate(self.path, complete)
            logger.warning(
                "gradscope.monitor.%s: %s ended in a torn row (%d bytes: a run stopped "
                "mid-row); cut it off before appending.",
                type(self).__name__,
                self.path,
                size - complete,
            )

    def _still_there(self, closing: bool = False) -> None:
        """If the open file was deleted (or moved) since it was opened, say so and drop it."""
        if self._file is None:
            return
        try:
            opened = os.fstat(self._file.fileno())
            try:
                current: os.stat_result | None = os.stat(self.path)
            except FileNotFoundError:
                current = None
        except OSError as error:
            self._failed("could not check the file", error, lost=0)
            self._discard(truncate=False)
            return
        same = current is not None and (current.st_ino, current.st_dev) == (
            opened.st_ino,
            opened.st_dev,
        )
        if same:
            return
        then = "" if closing else "; writing goes on in a new file"
        if opened.st_nlink == 0:
            lost = self._rows_in_file
            self._failed(
                f"the file was deleted while the run wrote it: the {lost} rows written to it are "
                f"gone{then}",
                None,
                lost=lost,
            )
        else:
            logger.warning(
                "gradscope.monitor.%s: %s was moved or replaced while the run wrote it; its "
                "rows so far are in the moved file%s.",
                type(self).__name__,
                self.path,
                then,
            )
        self._discard(truncate=False)

    def _failed(self, what: str, error: OSError | None, lost: int) -> None:
        self.errors += 1
        self.rows_lost += lost
        cause = "" if error is None else f" ({type(error).__name__}: {error})"
        logger.error(
            "gradscope.monitor.%s: %s: %s%s; %d rows lost so far; training goes on.",
            type(self).__name__,
            self.path,
            what,
            cause,
            self.rows_lost,
        )

    def _discard(self, truncate: bool = True) -> None:
        """Close the file quietly and cut off what a failed write left (reopened at the next write)."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # the failure was counted already
        if truncate:
            try:
                if self.path.stat().st_size > self._size:
                    os.truncate(self.path, self._size)
            except OSError:
                pass  # the next open cuts off a torn tail


class CSVSink(_FileSink):
    """Append records to a CSV file (header written once, flushed after each observation).

    The file is opened at the first write, so a sink that never writes (another rank's)
    leaves no file. Any layer, parameter or metric name survives the trip through the
    file and :func:`read_records` (fields with quotes, commas or newlines are quoted);
    the file is UTF-8.

    A failing disk never raises into training: a write or close that fails is logged
    and counted (``errors``, ``rows_lost``), and so is a file deleted while the
    run writes it (its rows are lost; writing goes on in a new file).

    Args:
        path: the file; its folder is created at the first write.

    Attributes:
        errors: failed writes, closes and files lost, each logged.
        rows_lost: rows that did not reach the file, or were written to a file since
            deleted.
        rows_written: rows written and flushed.

    Example:
        >>> import tempfile, pathlib, gradscope as gs
        >>> row = dict(zip(gs.monitor.COLUMNS, (0, "cell", "training", "Neumann", "all", "cosine", 0.5)))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sink = gs.monitor.CSVSink(pathlib.Path(folder) / "log.csv")
        ...     sink.write([row])
        ...     sink.close()
        ...     sink.path.read_text().splitlines()
        ['step,layer,role,estimator,param,metric,value', '0,cell,training,Neumann,all,cosine,0.5']

    """

    _newline = ""
    _csv = True

    def _format(self, rows: Sequence[dict]) -> str:
        buffer = io.StringIO(newline="")
        csv.DictWriter(buffer, fieldnames=COLUMNS).writerows(rows)
        return buffer.getvalue()

    def _header(self) -> str:
        buffer = io.StringIO(newline="")
        csv.DictWriter(buffer, fieldnames=COLUMNS).writeheader()
        return buffer.getvalue()


class JSONLSink(_FileSink):
    """Append records to a JSON-lines file, one row per line (opened at the first write).

    A failing disk never raises into training; see :class:`~gradscope.monitor.CSVSink`.

    Args:
        path: the file; its folder is created at the first write.

    Attributes:
        errors: failed writes, closes and files lost, each logged.
        rows_lost: rows that did not reach the file, or were written to a file since
            deleted.
        rows_written: rows written and flushed.

    Example:
        >>> import tempfile, pathlib, gradscope as gs
        >>> row = dict(zip(gs.monitor.COLUMNS, (0, "cell", "training", "Neumann", "all", "cosine", 0.5)))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sink = gs.monitor.JSONLSink(pathlib.Path(folder) / "log.jsonl")
        ...     sink.write([row])
        ...     sink.close()
        ...     sink.path.read_text().splitlines()
        ['{"step": 0, "layer": "cell", "role": "training", "estimator": "Neumann", "param": "all", "metric": "cosine", "value": 0.5}']

    """

    _newline = "\n"

    def _format(self, rows: Sequence[dict]) -> str:
        return "".join(json.dumps(row) + "\n" for row in rows)
