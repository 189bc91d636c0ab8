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

It never changes the training: it computes on detached copies through
:class:`~gradscope.FixedPointProblem` (parameters as detached aliases, buffers as
copies), under :func:`torch.random.fork_rng`, and its tensor hooks return ``None``; no
``.grad``, parameter, optimizer state, buffer, RNG state or train/eval flag changes.
An exception inside the monitor is logged and counted, and training goes on
(``raise_errors=True`` re-raises). Warnings raised by its own computations (a failed
solve: :class:`~gradscope.ConvergenceWarning`) are captured, logged and counted, not
re-emitted; an inexact h* is not warned about, its residual is a recorded metric.

Distributed training: under ``DistributedDataParallel`` each rank computes on its local
shard (nothing is reduced: the numbers describe the local batch); only rank
``writer_rank`` writes to the sinks. Every rank keeps its own records.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ._checks import check_steps, fail
from .estimators import (
    Exact,
    GradientEstimate,
    Neumann,
    OneStep,
    Unrolled,
    check_estimator,
    estimate_gradient,
)
from .exceptions import ConvergenceWarning
from .fixed_point import FixedPointResult, find_fixed_point
from .layers import ImplicitLayer
from .metrics import compare
from .problem import FixedPointProblem
from .solvers import GMRES

__all__ = [
    "COLUMNS",
    "CSVSink",
    "Every",
    "GradientMonitor",
    "JSONLSink",
    "LogSpaced",
    "LoggingSink",
    "TensorBoardSink",
    "read_records",
    "spectral_norm_extra",
    "theory_extra",
]

logger = logging.getLogger("gradscope.monitor")

#: The columns of a record.
COLUMNS = ("step", "layer", "role", "estimator", "param", "metric", "value")
#: The metrics of :func:`~gradscope.compare` recorded per estimator.
COMPARISON_METRICS = ("cosine", "relative_error", "absolute_error", "inner", "norm_ratio")

Estimator = Exact | Unrolled | Neumann | OneStep
#: ``extra(problem, exact, estimates) -> {name: float}``: more quantities per observation.
Extra = Callable[[FixedPointProblem, GradientEstimate, Mapping[str, GradientEstimate]], Mapping]


# ---------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class Every:
    """Observe steps ``start, start + n, start + 2n, ...``.

    Example:
        >>> import gradscope as gs
        >>> [s for s in range(12) if gs.monitor.Every(5)(s)]
        [0, 5, 10]

    """

    n: int = 50
    start: int = 0

    def __post_init__(self) -> None:
        check_steps("Every", "n", self.n)
        check_steps("Every", "start", self.start, minimum=0)

    def __call__(self, step: int) -> bool:
        """Whether ``step`` is observed."""
        return step >= self.start and (step - self.start) % self.n == 0


@dataclass(frozen=True)
class LogSpaced:
    """Observe step 0 and the steps ``round(10^(i / per_decade))``, i = 0, 1, 2, ...

    Dense early in training, when the gradients change fastest; sparse later.

    Example:
        >>> import gradscope as gs
        >>> [s for s in range(40) if gs.monitor.LogSpaced(4)(s)]
        [0, 1, 2, 3, 6, 10, 18, 32]

    """

    per_decade: int = 4

    def __post_init__(self) -> None:
        check_steps("LogSpaced", "per_decade", self.per_decade)

    def __call__(self, step: int) -> bool:
        """Whether ``step`` is observed."""
        if step <= 0:
            return step == 0
        i = round(self.per_decade * math.log10(step))
        return any(round(10 ** (j / self.per_decade)) == step for j in (i - 1, i, i + 1) if j >= 0)


Schedule = Every | LogSpaced | Callable[[int], bool]


# ---------------------------------------------------------------------- sinks
class CSVSink:
    """Append records to a CSV file (header written once, flushed after each observation).

    The file is opened at the first write, so a sink that never writes (another rank's)
    leaves no file.

    Args:
        path: the file; its folder is created at the first write.

    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None
        self._writer = None

    def write(self, rows: Sequence[dict]) -> None:
        """Write rows."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            if new:
                self._writer.writeheader()
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

    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None

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

    """

    def __init__(
        self, log_dir: str | Path | None = None, writer=None, *, per_param: bool = False
    ) -> None:
        if writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "gradscope.monitor.TensorBoardSink: tensorboard is not installed; expected it for "
                    "this sink. Install it with `pip install gradscope[logging]`."
                ) from error
            writer = SummaryWriter(log_dir=None if log_dir is None else str(log_dir))
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
    """Read records written by :class:`CSVSink` or :class:`JSONLSink` into a pandas DataFrame.

    Raises:
        ImportError: pandas is not installed (``pip install gradscope[logging]``).

    """
    pd = _pandas()
    path = Path(path)
    if path.suffix == ".jsonl":
        frame = pd.read_json(path, lines=True, dtype={"param": str, "layer": str})
    else:
        frame = pd.read_csv(path, dtype={"param": str, "layer": str, "estimator": str})
    return frame[list(COLUMNS)]


def _pandas():
    try:
        import pandas
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "gradscope: pandas is not installed; expected it for DataFrames of records. "
            "Install it with `pip install gradscope[logging]`."
        ) from error
    return pandas


# ---------------------------------------------------------------------- extras
def spectral_norm_extra(method: object | None = None) -> Extra:
    r"""An ``extra`` callable: ``‖J‖₂`` at each observed equilibrium, with its accuracy.

    Calls :func:`gradscope.spectral.spectral_norm` (Lanczos on ``JᵀJ``, one JVP and one
    VJP a step; or the ``method`` given).

    Returns:
        ``extra(problem, exact, estimates) -> {"jacobian_norm": float,
        "jacobian_norm_converged": 0/1}``.

    """
    from .spectral import spectral_norm

    def extra(problem: FixedPointProblem, exact, estimates) -> dict[str, float]:
        est = spectral_norm(problem, method)  # type: ignore[arg-type]
        return {"jacobian_norm": est.value, "jacobian_norm_converged": float(est.converged)}

    return extra


THEOREM1_CODES = {"holds": 1.0, "vacuous": 0.0, "fails": -1.0}


def theory_extra(estimator: Estimator | None = None, *, sample: int | None = 0) -> Extra:
    r"""An ``extra`` callable: ρ(J), ‖J‖₂ and the Theorem-1 verdict at each observation.

    * ``rho_J``: :func:`~gradscope.spectral_radius` (per-sample Arnoldi), the maximum over
      the samples;
    * ``jacobian_norm``: :func:`~gradscope.spectral.spectral_norm` (Lanczos on JᵀJ);
    * ``theorem1`` for ``estimator`` (default: the first estimate after the exact one):
      1 holds, 0 vacuous, −1 fails (:func:`~gradscope.theory.check_ascent`), with
      ``theorem1_error_norm`` ‖E‖₂ and ``theorem1_threshold`` σ_min²/σ_max.

    Theorem 1 needs σ_min(F_θ) > 0, which fails whenever the state (batch included) has
    more entries than F has parameters: for a batch it is almost always vacuous. With
    ``sample=i`` (default 0) the check is made on sample i alone (the condition for a
    loss of that sample), which is where it can say something; ``sample=None`` checks
    the whole batch.
    """

    def extra(problem: FixedPointProblem, exact, estimates) -> dict[str, float]:
        from .spectral import spectral_norm, spectral_radius
        from .theory import check_ascent

        values = {
            "rho_J": spectral_radius(problem).value,
            "jacobian_norm": spectral_norm(problem).value,
        }
        chosen = estimator
        if chosen is None:
            others = [e for name, e in estimates.items() if name != exact.name]
            chosen = others[0].estimator if others else None
        if chosen is not None and problem.params:
            target = problem
            if sample is not None and problem.batched:
                inputs = tuple(
                    x[sample : sample + 1]
                    if x.dim() >= 1 and x.shape[0] == problem.h_star.shape[0]
                    else x
                    for x in problem.inputs
                )
                target = FixedPointProblem.from_function(
                    problem.fn,
                    problem.params,
                    problem.h_star[sample : sample + 1],
                    *inputs,
                    rtol=1e9,
                )
            check = check_ascent(target, chosen)
            values["theorem1"] = THEOREM1_CODES[check.verdict]
            values["theorem1_error_norm"] = check.error_norm
            values["theorem1_threshold"] = check.threshold
        return values

    return extra


# ---------------------------------------------------------------------- monitor
@dataclass
class _Counter:
    steps: dict[str, int] = field(default_factory=dict)

    def next(self, name: str) -> int:
        step = self.steps.get(name, -1) + 1
        self.steps[name] = step
        return step


class GradientMonitor:
    r"""Record, on a schedule, how the training gradient compares with the exact one.

    Args:
        estimators: estimators to compare with the exact gradient at each observation
            (default ``Neumann(5, 0.5)``, ``Unrolled(5, 0.5)``, ``OneStep()``); the
            estimator a watched :class:`~gradscope.ImplicitLayer` trains with is added
            (role ``"training"``).
        exact: the reference (default ``Exact(GMRES(rtol=1e-6))``).
        schedule: :class:`Every`, :class:`LogSpaced` or a callable ``step -> bool``
            (default ``Every(50)``).
        sinks: where rows go (:class:`CSVSink`, :class:`JSONLSink`,
            :class:`TensorBoardSink`, :class:`LoggingSink`, or any object with
            ``write(rows)`` and ``close()``).
        extra: optional ``extra(problem, exact, estimates) -> {name: float}`` for more
            quantities (ρ(J), ‖J‖₂, the Theorem-1 verdict); see :func:`spectral_norm_extra`.
        per_param: also record the comparison per parameter tensor (every metric of the
            overall comparison: cosine, relative and absolute error, inner product, norm
            ratio).
        raise_errors: re-raise exceptions from the monitor instead of logging them.
        keep_records: keep rows in memory (for :meth:`dataframe`).
        writer_rank: under ``torch.distributed``, the only rank that writes to sinks.

    Attributes:
        records: the rows (dicts with keys ``step, layer, role, estimator, param, metric,
            value``).
        errors: number of observations that raised (logged, training went on).
        warnings: number of warnings captured from the monitor's own computations.
        observations: number of completed observations.

    Example:
        >>> import torch, gradscope as gs
        >>> _ = torch.manual_seed(0)
        >>> model = gs.synthetic.DigitsDEQ(width=16)
        >>> monitor = gs.GradientMonitor(schedule=gs.monitor.Every(2))
        >>> monitor.attach(model.layer, name="deq")  # doctest: +ELLIPSIS
        <function ...>
        >>> for _ in range(3):
        ...     model(torch.randn(8, 64)).square().mean().backward()
        >>> monitor.observations, sorted({r["step"] for r in monitor.records})
        (2, [0, 2])

    """

    def __init__(
        self,
        estimators: Iterable[Estimator] | None = None,
        exact: Exact | None = None,
        schedule: Schedule | None = None,
        sinks: Iterable = (),
        extra: Extra | None = None,
        *,
        per_param: bool = True,
        raise_errors: bool = False,
        keep_records: bool = True,
        writer_rank: int = 0,
    ) -> None:
        call = "GradientMonitor"
        estimators = (
            [Neumann(5, 0.5), Unrolled(5, 0.5), OneStep()]
            if estimators is None
            else list(estimators)
        )
        for e in estimators:
            check_estimator(call, e, "estimators")
        exact = Exact(GMRES(rtol=1e-6)) if exact is None else exact
        if not isinstance(exact, Exact):
            fail(call, f"exact={exact!r}; expected gradscope.Exact(solver).", TypeError)
        schedule = Every(50) if schedule is None else schedule
        if not callable(schedule):
            fail(
                call,
                f"schedule={schedule!r}; expected gradscope.monitor.Every(n), LogSpaced(k) or a "
                "callable step -> bool.",
                TypeError,
            )
        if extra is not None and not callable(extra):
            fail(call, f"extra={extra!r}; expected a callable or None.", TypeError)
        self.estimators = estimators
        self.exact = exact
        self.schedule = schedule
        self.sinks = list(sinks)
        for sink in self.sinks:
            if not callable(getattr(sink, "write", None)):
                fail(call, f"sink {sink!r} has no write(rows) method.", TypeError)
        self.extra = extra
        self.per_param = per_param
        self.raise_errors = raise_errors
        self.keep_records = keep_records
        self.writer_rank = writer_rank
        self.records: list[dict] = []
        self.errors = 0
        self.warnings = 0
        self.observations = 0
        self.last_error: str | None = None
        self._counter = _Counter()
        self._detach: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ attaching
    def _observer_hook(
        self,
        cell,
        h_star: torch.Tensor,
        inputs: tuple,
        **observe_kwargs,
    ) -> Callable[[torch.Tensor], None]:
        """A tensor hook that runs :meth:`observe` on the cotangent it receives.

        h* and the inputs are detached now, so the hook keeps no graph alive.
        """
        h = h_star.detach()
        xs = tuple(x.detach() for x in inputs)

        def hook(g: torch.Tensor) -> None:
            self.observe(cell, h, *xs, cotangent=g, **observe_kwargs)

        return hook

    def attach(self, layer: ImplicitLayer, name: str = "layer") -> Callable[[], None]:
        """Watch a :class:`~gradscope.ImplicitLayer`: each differentiable forward is a step.

        At a scheduled step a hook on the layer's output captures ``g`` during the
        training backward and :meth:`observe` runs there, with the cell's current
        parameters; the layer's estimator is compared too (role ``"training"``).

        Returns:
            A function that detaches the monitor.

        """
        if not isinstance(layer, ImplicitLayer):
            fail(
                "GradientMonitor.attach",
                f"layer is a {type(layer).__name__}; expected a gradscope.ImplicitLayer. "
                "For another DEQ use GradientMonitor.watch or attach_torchdeq.",
                TypeError,
            )

        def observer(layer: ImplicitLayer, h_star, output, inputs) -> None:
            step = self._counter.next(name)
            if not self._scheduled(step):
                return
            output.register_hook(
                self._observer_hook(
                    layer.cell,
                    h_star,
                    inputs,
                    step=step,
                    name=name,
                    training_estimator=layer.estimator,
                    forward=layer.last_forward,
                )
            )

        remove = layer.add_observer(observer)
        self._detach.append(remove)
        return remove

    def watch(
        self,
        h_star: torch.Tensor,
        cell: nn.Module | Callable[..., torch.Tensor],
        *inputs: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None,
        name: str = "deq",
        step: int | None = None,
        training_estimator: Estimator | None = None,
    ) -> torch.Tensor:
        """Watch any DEQ: call it on the equilibrium your network consumes, every step.

        At a scheduled step a tensor hook on ``h_star`` captures ``g = ∂ℓ/∂h*`` during
        your own ``backward`` and :meth:`observe` runs there. ``h_star`` is returned
        unchanged (the same tensor).

        Args:
            h_star: the equilibrium tensor the rest of the network uses (requires grad).
            cell: the map F: a module ``F(h, *inputs)`` or a function
                ``fn(params, h, *inputs)`` (then pass ``params``).
            *inputs: the inputs of F after h.
            params: the parameters of a function cell.
            name: the layer's label in the records.
            step: the step number (default: count calls per name).
            training_estimator: the estimator your training uses, to label its rows.

        """
        step = self._counter.next(name) if step is None else step
        if self._scheduled(step) and h_star.requires_grad:
            h_star.register_hook(
                self._observer_hook(
                    cell,
                    h_star,
                    inputs,
                    step=step,
                    name=name,
                    training_estimator=training_estimator,
                    params=params,
                )
            )
        return h_star

    def attach_torchdeq(
        self,
        deq: nn.Module,
        cell: nn.Module,
        name: str = "deq",
        training_estimator: Estimator | None = None,
        rtol: float = 1e-6,
        max_steps: int = 100,
    ) -> Callable[[], None]:
        """Watch a TorchDEQ 0.1.0 DEQ module (``z_out, info = deq(f, z0)``).

        ``f`` is your closure ``z ↦ F(z, x)``; ``cell`` is the module holding F's
        parameters (called inside ``f``). At a scheduled training step the monitor
        re-solves ``h* = f(h*)`` to ``rtol`` from TorchDEQ's ``z_out[-1]`` (TorchDEQ does
        not return its h*), records TorchDEQ's own forward statistics, and compares the
        estimators on the cotangent of ``z_out[-1]``. Inputs inside the closure get no
        gradient of their own.

        Returns:
            A function that detaches the monitor.

        """
        if not isinstance(cell, nn.Module):
            fail(
                "GradientMonitor.attach_torchdeq",
                f"cell is a {type(cell).__name__}; expected the nn.Module whose parameters F uses.",
                TypeError,
            )

        def forward_hook(module, args, kwargs, output) -> None:
            if not module.training or not torch.is_grad_enabled():
                return
            step = self._counter.next(name)
            if not self._scheduled(step):
                return
            func = args[0] if args else kwargs["func"]
            z_out, info = output
            z = z_out[-1]
            if not isinstance(z, torch.Tensor) or not z.requires_grad:
                return
            z0 = z.detach()
            stats = {
                key: float(torch.as_tensor(info[key]).float().mean())
                for key in ("abs_lowest", "rel_lowest", "nstep")
                if key in info
            }
            holder = _ClosureCell(cell, func)
            names = [n for n, p in cell.named_parameters() if p.requires_grad]

            def fn(params, h):
                return torch.func.functional_call(
                    holder, {f"cell.{n}": p for n, p in params.items()}, (h,)
                )

            def hook(g: torch.Tensor) -> None:
                def compute():
                    fp = find_fixed_point(func, h0=z0, rtol=rtol, max_steps=max_steps, warn=False)
                    named = dict(cell.named_parameters())
                    return fp, {n: named[n] for n in names}

                self.observe(
                    fn,
                    None,
                    cotangent=g,
                    step=step,
                    name=name,
                    training_estimator=training_estimator,
                    prepare=compute,
                    torchdeq_stats=stats,
                )

            z.register_hook(hook)

        handle = deq.register_forward_hook(forward_hook, with_kwargs=True)
        self._detach.append(handle.remove)
        return handle.remove

    def detach(self) -> None:
        """Remove every hook the monitor registered."""
        for remove in self._detach:
            remove()
        self._detach.clear()

    # ------------------------------------------------------------------ observing
    def _scheduled(self, step: int) -> bool:
        try:
            return bool(self.schedule(step))
        except Exception as error:
            self._fail(error, "schedule")
            return False

    def observe(
        self,
        cell: nn.Module | Callable[..., torch.Tensor],
        h_star: torch.Tensor | None,
        *inputs: torch.Tensor,
        cotangent: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None,
        step: int | None = None,
        name: str = "deq",
        training_estimator: Estimator | None = None,
        forward: FixedPointResult | None = None,
        prepare: Callable[[], tuple[FixedPointResult, Mapping]] | None = None,
        torchdeq_stats: Mapping[str, float] | None = None,
    ) -> list[dict]:
        """Record one observation now (the explicit call; hooks end up here too).

        Args:
            cell: F, a module ``F(h, *inputs)`` or a function ``fn(params, h, *inputs)``.
            h_star: the equilibrium.
            *inputs: the inputs of F after h.
            cotangent: ``g = ∂ℓ/∂h*``.
            params: the parameters of a function cell.
            step: the step number (default: count calls per name).
            name: the layer's label.
            training_estimator: the estimator used for training (its rows get role
                ``"training"``).
            forward: the forward solve's result, to record its steps.
            prepare: internal: computes ``(fixed point, params)`` inside the guard.
            torchdeq_stats: internal: TorchDEQ's forward statistics.

        Returns:
            The rows recorded (an ``error`` row when the monitor failed).

        """
        step = self._counter.next(name) if step is None else step
        g = cotangent.detach()
        device = g.device
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        rows: list[dict] = []
        try:
            with (
                torch.random.fork_rng(devices=rng_devices),
                warnings.catch_warnings(record=True) as caught,
            ):
                # Count and log the numerical failures (ConvergenceWarning); an inexact h*
                # is a recorded metric (forward residual), and other libraries' warnings
                # from inside the monitor are not the user's business.
                warnings.simplefilter("ignore")
                warnings.simplefilter("always", ConvergenceWarning)
                if prepare is not None:
                    fp, params = prepare()
                    forward, h_star = fp, fp.value
                rows = self._compute(
                    cell, h_star, inputs, g, params, step, name, training_estimator, forward
                )
                if torchdeq_stats:
                    rows += [
                        _row(step, name, "forward", "torchdeq", "all", k, v)
                        for k, v in torchdeq_stats.items()
                    ]
            if caught:
                self.warnings += len(caught)
                for w in caught:
                    logger.warning(
                        "gradscope.GradientMonitor (step %d, %s): %s", step, name, w.message
                    )
                rows.append(_row(step, name, "monitor", "monitor", "all", "warnings", len(caught)))
            self.observations += 1
        except Exception as error:
            self._fail(error, f"step {step}, {name}")
            rows = [_row(step, name, "monitor", "monitor", "all", "error", 1.0)]
        self._emit(rows)
        return rows

    def _compute(self, cell, h_star, inputs, g, params, step, name, training, forward):
        start = time.perf_counter()
        if isinstance(cell, nn.Module) and params is None:
            problem = FixedPointProblem.from_module(cell, h_star, *inputs)
        else:
            if params is None:
                fail(
                    "GradientMonitor.observe",
                    "cell is a function but params is None; expected the dict of parameters "
                    "fn(params, h, *inputs) differentiates.",
                    TypeError,
                )
            problem = FixedPointProblem.from_function(cell, dict(params), h_star, *inputs)
        rows = [
            _row(step, name, "forward", "forward", "all", "residual", problem.residual.max_relative)
        ]
        if forward is not None:
            rows.append(_row(step, name, "forward", "forward", "all", "steps", forward.steps))
            rows.append(
                _row(step, name, "forward", "forward", "all", "converged", float(forward.converged))
            )
        exact = estimate_gradient(problem, g, self.exact)
        solution = exact.solution
        exact_name = exact.name
        rows += [
            _row(step, name, "exact", exact_name, "all", metric, value)
            for metric, value in (
                ("converged", float(solution.converged)),
                ("residual", solution.residual),
                ("steps", solution.steps),
                ("vjps", exact.cost.vjps),
                ("seconds", exact.cost.seconds),
                ("grad_norm", float(exact.flat().norm()) if exact.grads else 0.0),
            )
        ]
        estimators = list(self.estimators)
        if training is not None and training not in estimators:
            estimators.append(training)
        estimates: dict[str, GradientEstimate] = {exact_name: exact}
        for estimator in estimators:
            estimate = estimate_gradient(problem, g, estimator)
            estimates[estimate.name] = estimate
            role = "training" if estimator == training else "estimator"
            rows.append(_row(step, name, role, estimate.name, "all", "vjps", estimate.cost.vjps))
            rows.append(
                _row(step, name, role, estimate.name, "all", "seconds", estimate.cost.seconds)
            )
            if not solution.converged:  # no trustworthy reference to compare with
                continue
            comparison = compare(estimate, exact)
            for metric in COMPARISON_METRICS:
                rows.append(
                    _row(
                        step, name, role, estimate.name, "all", metric, getattr(comparison, metric)
                    )
                )
            if self.per_param:
                for param, agreement in comparison.per_param.items():
                    for metric in COMPARISON_METRICS:
                        rows.append(
                            _row(
                                step,
                                name,
                                role,
                                estimate.name,
                                param,
                                metric,
                                getattr(agreement, metric),
                            )
                        )
        if self.extra is not None:
            for metric, value in dict(self.extra(problem, exact, estimates)).items():
                rows.append(_row(step, name, "extra", "extra", "all", str(metric), float(value)))
        rows.append(
            _row(step, name, "monitor", "monitor", "all", "seconds", time.perf_counter() - start)
        )
        return rows

    def _fail(self, error: Exception, where: str) -> None:
        self.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"
        if self.raise_errors:
            raise error
        logger.error(
            "gradscope.GradientMonitor failed (%s): %s; training goes on.", where, self.last_error
        )

    def _emit(self, rows: list[dict]) -> None:
        if self.keep_records:
            self.records.extend(rows)
        if not self.sinks or _rank() != self.writer_rank:
            return
        for sink in self.sinks:
            try:
                sink.write(rows)
            except Exception as error:
                self._fail(error, f"sink {type(sink).__name__}")

    # ------------------------------------------------------------------ results
    def dataframe(self):
        """The records as a pandas DataFrame (needs pandas).

        Columns: ``step, layer, role, estimator, param, metric, value``.
        """
        pd = _pandas()
        return pd.DataFrame(self.records, columns=list(COLUMNS))

    def close(self) -> None:
        """Detach the hooks and close the sinks."""
        self.detach()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        names = [e.name for e in self.estimators]
        return (
            f"GradientMonitor(exact={self.exact.name}, estimators={names}, "
            f"observations={self.observations}, errors={self.errors})"
        )


class _ClosureCell(nn.Module):
    """Holds a cell so that functional_call swaps its parameters while a closure runs."""

    def __init__(self, cell: nn.Module, func: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.cell = cell
        self.func = func

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.func(h)


def _row(step, layer, role, estimator, param, metric, value) -> dict:
    return {
        "step": int(step),
        "layer": str(layer),
        "role": role,
        "estimator": str(estimator),
        "param": str(param),
        "metric": metric,
        "value": float(value),
    }


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
