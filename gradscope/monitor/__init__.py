r"""GradientMonitor: on a schedule, record how good the gradient you train with is.

At a scheduled step the monitor takes the equilibrium ``h*``, the inputs and the cotangent
``g = ∂ℓ/∂h*`` that the training backward hands the layer (captured by a tensor hook,
never altered), and records

* the forward residual ``‖F(h*) − h*‖ / ‖F(h*)‖`` (and the layer's solver stats);
* the exact gradient ``F_θᵀ (I − Jᵀ)⁻¹ g`` (solver configurable) and its certified solve;
* for each configured estimator — and the one used for training —
  :func:`~gradscope.compare` against the exact gradient: cosine, relative and absolute
  error (Theorem 3's ε, :ref:`theory-theorem3`), inner product (Theorem 1's ascent test), norm
  ratio, per parameter;
* whatever an ``extra`` callable returns (ρ(J), ‖J‖₂, the Theorem-1 verdict, ...).

Records are tidy rows ``(step, layer, role, estimator, param, metric, value)``; they go
to sinks (CSV, JSONL, TensorBoard, Python logging) and to :meth:`GradientMonitor.dataframe <gradscope.GradientMonitor.dataframe>`.

The package, one concept per module:

* ``gradscope.monitor.monitor``: :class:`~gradscope.GradientMonitor` (hooks, schedule,
  sinks);
* ``gradscope.monitor.options``: its options, checked and defaulted;
* ``gradscope.monitor.guard``: the guard that keeps training going (failures counted and
  logged, rows to memory and the sinks);
* ``gradscope.monitor.output``: the bounded in-memory records, closing the sinks, their
  counts;
* ``gradscope.monitor.observation``: what one observation measures;
* ``gradscope.monitor.schedules``: :class:`~gradscope.monitor.Every`, :class:`~gradscope.monitor.LogSpaced`;
* ``gradscope.monitor.sinks``: :class:`~gradscope.monitor.TensorBoardSink`,
  :class:`~gradscope.monitor.LoggingSink`;
* ``gradscope.monitor.files``: the file sinks :class:`~gradscope.monitor.CSVSink`,
  :class:`~gradscope.monitor.JSONLSink` and their safe file handling;
* ``gradscope.monitor.reading``: :func:`~gradscope.monitor.read_records`,
  :class:`~gradscope.monitor.TornRecordsWarning` and the parsing;
* ``gradscope.monitor.extras``: :func:`~gradscope.monitor.spectral_norm_extra`, :func:`~gradscope.monitor.theory_extra`;
* ``gradscope.monitor.records``: the row format (:data:`~gradscope.monitor.COLUMNS`);
* ``gradscope.monitor.torchdeq``: the TorchDEQ adapter.

It never changes the training: it computes on detached copies through
:class:`~gradscope.FixedPointProblem` (parameters as detached aliases, buffers as
copies), under :func:`torch.random.fork_rng`, and its tensor hooks return ``None``; no
``.grad``, parameter, optimizer state, buffer, RNG state or train/eval flag changes.
An exception inside the monitor is logged and counted, and training goes on
(``raise_errors=True`` re-raises). Each quantity of an observation (the forward residual,
the reference, each estimator, each ``extra``) is computed on its own: one that raises
loses only its own rows and leaves a row ``error`` = 1. A numerical failure of its own
computations (a failed solve, a growing series: an estimate whose
:class:`~gradscope.Status` is not ok) is read from the result, logged, counted and
recorded as a row ``status_<status>`` (no warning is raised or caught); an observation
whose reference failed also gets a row ``reference_failed`` = 1 and no comparisons. An
inexact h* is not a failure, its residual is a recorded metric.

Nothing is lost silently on the way out either: a sink that cannot write (a full disk, a
folder deleted mid-run) or close is logged and counted (``monitor.errors``,
``monitor.rows_lost``), never raised into training or out of
:meth:`GradientMonitor.close <gradscope.GradientMonitor.close>`; :func:`~gradscope.monitor.read_records` skips a torn final row
(a run killed mid-row) with a :class:`~gradscope.monitor.TornRecordsWarning`; an int ``keep_records`` bounds the rows kept in
memory and counts those dropped (``monitor.records_dropped``).

Distributed training: under ``DistributedDataParallel`` each rank computes on its local
shard (nothing is reduced: the numbers describe the local batch); only rank
``writer_rank`` writes to the sinks. Every rank keeps its own records.
"""

from . import extras as _extras
from .extras import spectral_norm_extra, theorem1_verdict, theory_extra
from .files import CSVSink, JSONLSink
from .monitor import GradientMonitor
from .reading import TornRecordsWarning, read_records
from .records import COLUMNS, COMPARISON_METRICS
from .schedules import Every, LogSpaced
from .sinks import LoggingSink, TensorBoardSink

#: The number each Theorem-1 verdict is recorded as in the monitor's rows (a row's value
#: is a float); any other verdict is recorded as NaN. Defined in
#: ``gradscope.monitor.extras``, the one place that encodes and decodes verdicts.
THEOREM1_CODES = _extras.THEOREM1_CODES

__all__ = [
    "COLUMNS",
    "COMPARISON_METRICS",
    "THEOREM1_CODES",
    "CSVSink",
    "Every",
    "GradientMonitor",
    "JSONLSink",
    "LogSpaced",
    "LoggingSink",
    "TensorBoardSink",
    "TornRecordsWarning",
    "read_records",
    "spectral_norm_extra",
    "theorem1_verdict",
    "theory_extra",
]
