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

* :mod:`~gradscope.monitor.monitor`: :class:`~gradscope.GradientMonitor` (hooks, schedule,
  sinks, the guard that keeps training going);
* :mod:`~gradscope.monitor.observation`: what one observation measures;
* :mod:`~gradscope.monitor.schedules`: :class:`Every`, :class:`LogSpaced`;
* :mod:`~gradscope.monitor.sinks`: :class:`CSVSink`, :class:`JSONLSink`,
  :class:`TensorBoardSink`, :class:`LoggingSink` and :func:`read_records`;
* :mod:`~gradscope.monitor.extras`: :func:`spectral_norm_extra`, :func:`theory_extra`;
* :mod:`~gradscope.monitor.records`: the row format (:data:`COLUMNS`);
* :mod:`~gradscope.monitor.torchdeq`: the TorchDEQ adapter.

It never changes the training: it computes on detached copies through
:class:`~gradscope.FixedPointProblem` (parameters as detached aliases, buffers as
copies), under :func:`torch.random.fork_rng`, and its tensor hooks return ``None``; no
``.grad``, parameter, optimizer state, buffer, RNG state or train/eval flag changes.
An exception inside the monitor is logged and counted, and training goes on
(``raise_errors=True`` re-raises). A numerical failure of its own computations (a failed
solve, a growing series: an estimate whose :class:`~gradscope.Status` is not ok) is read
from the result, logged, counted and recorded as a row ``status_<status>`` (no warning is
raised or caught); an inexact h* is not a failure, its residual is a recorded metric.

Distributed training: under ``DistributedDataParallel`` each rank computes on its local
shard (nothing is reduced: the numbers describe the local batch); only rank
``writer_rank`` writes to the sinks. Every rank keeps its own records.
"""

from .extras import THEOREM1_CODES, spectral_norm_extra, theorem1_verdict, theory_extra
from .monitor import GradientMonitor
from .records import COLUMNS, COMPARISON_METRICS
from .schedules import Every, LogSpaced
from .sinks import CSVSink, JSONLSink, LoggingSink, TensorBoardSink, read_records

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
    "read_records",
    "spectral_norm_extra",
    "theorem1_verdict",
    "theory_extra",
]
