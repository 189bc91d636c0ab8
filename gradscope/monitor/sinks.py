"""Where the monitor's rows go: CSV, JSON lines, TensorBoard, Python logging; and back."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .._checks import require
from .records import COLUMNS, require_pandas

__all__ = ["CSVSink", "JSONLSink", "LoggingSink", "TensorBoardSink", "read_records"]


class CSVSink:
    """Append records to a CSV file (header written once, flushed after each observation).

    The file is opened at the first write, so a sink that never writes (another rank's)
    leaves no file.

    Args:
        path: the file; its folder is created at the first write.

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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None

    def write(self, rows: Sequence[dict]) -> None:
        """Write rows."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            if new:
                self._writer.writeheader()
        assert self._writer is not None  # created with the file, at the first write
        self._writer.writerows(rows)
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class JSONLSink:
    """Append records to a JSON-lines file, one row per line (opened at the first write).

    Args:
        path: the file; its folder is created at the first write.

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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None

    def write(self, rows: Sequence[dict]) -> None:
        """Write rows."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a")
        for row in rows:
            self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardSink:
    """Write scalars ``<layer>/<estimator>/<metric>`` to TensorBoard (needs ``tensorboard``).

    Args:
        log_dir: folder of the event files (ignored when ``writer`` is given).
        writer: an existing :class:`torch.utils.tensorboard.SummaryWriter`.
        per_param: also write per-parameter rows (``.../<metric>/<param>``).

    Raises:
        ImportError: tensorboard is not installed (``pip install gradscope[logging]``).

    Example:
        >>> import tempfile, pathlib, gradscope as gs
        >>> row = dict(zip(gs.monitor.COLUMNS, (0, "cell", "training", "Neumann", "all", "cosine", 0.5)))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sink = gs.monitor.TensorBoardSink(folder)
        ...     sink.write([row])
        ...     sink.close()
        ...     [f.name.startswith("events.out.tfevents") for f in pathlib.Path(folder).iterdir()]
        [True]

    """

    def __init__(
        self, log_dir: str | Path | None = None, writer=None, *, per_param: bool = False
    ) -> None:
        if writer is None:
            tensorboard = require(
                "torch.utils.tensorboard", "monitor.TensorBoardSink", "this sink", "logging"
            )
            writer = tensorboard.SummaryWriter(log_dir=None if log_dir is None else str(log_dir))
        self.writer = writer
        self.per_param = per_param

    def write(self, rows: Sequence[dict]) -> None:
        """Write rows as scalars."""
        for row in rows:
            if row["param"] != "all" and not self.per_param:
                continue
            tag = f"{row['layer']}/{row['estimator']}/{row['metric']}"
            if row["param"] != "all":
                tag += f"/{row['param']}"
            self.writer.add_scalar(tag, row["value"], row["step"])

    def close(self) -> None:
        """Flush and close the writer."""
        self.writer.flush()
        self.writer.close()


class LoggingSink:
    """Log one line per estimator and observation to a :mod:`logging` logger.

    Args:
        logger: the logger (default ``gradscope.monitor``).
        level: the level of the messages.

    Example:
        >>> import logging, sys, gradscope as gs
        >>> logger = logging.getLogger("gradscope.example")
        >>> logger.addHandler(logging.StreamHandler(sys.stdout))
        >>> logger.setLevel(logging.INFO)
        >>> sink = gs.monitor.LoggingSink(logger)
        >>> sink.write([dict(zip(gs.monitor.COLUMNS, (3, "cell", "training", "Neumann", "all", "cosine", 0.98765)))])
        step 3 cell [training] Neumann: cosine=0.9877
        >>> sink.close()
        >>> logger.handlers.clear()

    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("gradscope.monitor")
        self.level = level

    def write(self, rows: Sequence[dict]) -> None:
        """Log a summary of the rows."""
        groups: dict[tuple, dict[str, float]] = {}
        for row in rows:
            if row["param"] == "all":
                key = (row["step"], row["layer"], row["role"], row["estimator"])
                groups.setdefault(key, {})[row["metric"]] = row["value"]
        for (step, layer, role, estimator), metrics in groups.items():
            text = ", ".join(f"{m}={v:.4g}" for m, v in metrics.items())
            self.logger.log(
                self.level, "step %d %s [%s] %s: %s", step, layer, role, estimator, text
            )

    def close(self) -> None:
        """Nothing to close."""


def read_records(path: str | Path):
    """Read records written by :class:`~gradscope.monitor.CSVSink` or :class:`~gradscope.monitor.JSONLSink` into a pandas DataFrame.

    Returns:
        The DataFrame, with the columns in the order of the records.

    Raises:
        ImportError: pandas is not installed (``pip install gradscope[logging]``).

    """
    pd = require_pandas()
    path = Path(path)
    if path.suffix == ".jsonl":
        frame = pd.read_json(path, lines=True, dtype={"param": str, "layer": str})
    else:
        frame = pd.read_csv(path, dtype={"param": str, "layer": str, "estimator": str})
    return frame[list(COLUMNS)]
