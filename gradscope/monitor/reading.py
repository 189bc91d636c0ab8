"""Reading the monitor's files back: :func:`~gradscope.monitor.read_records` and the parsing.

Also where a record ends in each format (:func:`csv_complete`, :func:`json_record`),
which the file sinks use to cut a torn tail off before appending.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from .records import COLUMNS, require_pandas

__all__ = ["TornRecordsWarning", "csv_complete", "json_record", "read_records"]


class TornRecordsWarning(UserWarning):
    """:func:`~gradscope.monitor.read_records` skipped a torn final record.

    A writer stopped mid-row (killed, or out of disk): the incomplete record is left out
    rather than read with a truncated value.
    """


def csv_complete(data: bytes, quotes_before: int = 0) -> int | None:
    """The length of the longest prefix of CSV ``data`` that ends with a complete record.

    A record ends at a newline outside quotes. Python's csv writer quotes every field
    that holds a quote (doubling it), so a position is inside a quoted field exactly
    when an odd number of quotes precede it (``quotes_before``: those before ``data``).

    Returns:
        The length, or None when ``data`` holds no record boundary.

    """
    quotes = quotes_before + data.count(b'"')
    end = len(data)
    while end > 0:
        newline = data.rfind(b"\n", 0, end)
        if newline < 0:
            return None
        if (quotes - data.count(b'"', newline + 1)) % 2 == 0:
            return newline + 1
        end = newline
    return None


def json_record(line: bytes) -> dict | None:
    """The record a JSON line holds, or None when it is not a whole record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not set(COLUMNS) <= set(record):
        return None
    return record


def read_records(path: str | Path):
    """Read records written by :class:`~gradscope.monitor.CSVSink` or :class:`~gradscope.monitor.JSONLSink` into a pandas DataFrame.

    Names come back exactly as written (quotes, commas, newlines, ``"nan"``: every
    field but ``step`` and ``value`` is a string). A torn final record (a writer killed
    mid-row or out of disk: the file does not end with a newline, or its last record
    lacks fields) is skipped with a :class:`~gradscope.monitor.TornRecordsWarning`
    (a ``UserWarning``); it is never read with a truncated value. A malformed record elsewhere raises.

    Returns:
        The DataFrame, with the columns in the order of the records.

    Raises:
        ImportError: pandas is not installed (``pip install gradscope[logging]``).
        ValueError: a record before the last one is malformed.

    """
    pd = require_pandas()
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        records, torn = _read_jsonl(path, data)
    else:
        records, torn = _read_csv(path, data)
    if torn:
        warnings.warn(
            f"gradscope.monitor.read_records: {path} ends in a torn record ({torn}); "
            "skipped it (the writer stopped mid-row).",
            TornRecordsWarning,
            stacklevel=2,
        )
    columns = {name: [record[i] for record in records] for i, name in enumerate(COLUMNS)}
    frame = pd.DataFrame(columns, columns=list(COLUMNS))
    return frame.astype({"step": "int64", "value": "float64"})


def _record(path: Path, number: int, fields: Sequence) -> tuple:
    """One record's fields as ``(step, layer, role, estimator, param, metric, value)``."""
    if len(fields) != len(COLUMNS):
        raise ValueError(
            f"gradscope.monitor.read_records: {path}, record {number} has {len(fields)} "
            f"fields; expected {len(COLUMNS)} ({', '.join(COLUMNS)}). The file is damaged."
        )
    try:
        step, value = int(fields[0]), float(fields[-1])
    except (TypeError, ValueError):
        raise ValueError(
            f"gradscope.monitor.read_records: {path}, record {number}: step {fields[0]!r} or "
            f"value {fields[-1]!r} is not a number. The file is damaged."
        ) from None
    return (step, *(str(field) for field in fields[1:-1]), value)


def _read_csv(path: Path, data: bytes) -> tuple[list[tuple], str]:
    """The records of a CSV file (record 1 is the header) and what was torn off its end."""
    complete = csv_complete(data) or 0
    torn = "the file does not end with a newline" if complete < len(data) else ""
    rows = list(csv.reader(io.StringIO(data[:complete].decode("utf-8"), newline="")))
    if not rows:
        return [], torn
    header, rows = rows[0], rows[1:]
    if tuple(header) != COLUMNS:
        raise ValueError(
            f"gradscope.monitor.read_records: {path} has the header {header}; expected "
            f"{list(COLUMNS)} (a file written by CSVSink)."
        )
    if rows and len(rows[-1]) < len(COLUMNS):
        rows, torn = rows[:-1], f"its last record has {len(rows[-1])} fields"
    return [_record(path, i + 2, fields) for i, fields in enumerate(rows)], torn


def _read_jsonl(path: Path, data: bytes) -> tuple[list[tuple], str]:
    """The records of a JSON-lines file and what was torn off its end."""
    lines = data.split(b"\n")
    records, torn = [], ""
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        record = json_record(line)
        if record is None:
            if i == last:
                torn = "its last line is not a whole record"
                break
            raise ValueError(
                f"gradscope.monitor.read_records: {path}, line {i + 1} is not a JSON record "
                f"with the fields {', '.join(COLUMNS)}. The file is damaged."
            )
        records.append(_record(path, i + 1, [record[name] for name in COLUMNS]))
    return records, torn
