"""Where the monitor's rows go, besides files: TensorBoard and Python logging.

A sink is any object with ``write(rows)`` and ``close()``; the file sinks
(:class:`~gradscope.monitor.CSVSink`, :class:`~gradscope.monitor.JSONLSink`) are in
``gradscope.monitor.files``, and reading their files back in ``gradscope.monitor.reading``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .._checks import require

__all__ = ["LoggingSink", "TensorBoardSink"]


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
