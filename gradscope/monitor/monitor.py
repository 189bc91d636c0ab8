"""The :class:`~gradscope.GradientMonitor`: hooks, schedule, sinks and the guard around them.

What one observation measures is :func:`~gradscope.monitor.observation.measure`; the
TorchDEQ adapter is ``gradscope.monitor.torchdeq``; the options are checked in
``gradscope.monitor.options``; the guard is ``gradscope.monitor.guard``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from .._checks import check_bool, check_steps, check_tensor, fail
from ..estimators import Estimator, Exact
from ..fixed_point import FixedPointResult
from ..layers import ImplicitLayer
from .extras import Extra
from .guard import Guard
from .hooks import attach_layer, observer_hook
from .observation import Observation, measure
from .options import monitor_options
from .output import close_sinks, sink_count
from .records import COLUMNS, REFERENCE_FAILED, require_pandas, row
from .schedules import Schedule
from .torchdeq import register_torchdeq

__all__ = ["GradientMonitor"]


class GradientMonitor(Guard):
    r"""Record, on a schedule, how the training gradient compares with the exact one.

    Args:
        estimators: estimators to compare with the exact gradient at each observation
            (default ``Neumann(5, 0.5)``, ``Unrolled(5, 0.5)``, ``OneStep()``); the
            estimator a watched :class:`~gradscope.ImplicitLayer` trains with is added
            (role ``"training"``).
        exact: the reference (default ``Exact(GMRES())``: its tolerance follows the dtype
            of each observation, :func:`~gradscope.solvers.default_solver_rtol`, 1e-8 in
            float64 and 1e-5 in float32, the floor a float32 solve can reach near
            ρ(J) → 1). An observation whose reference fails or raises leaves a row
            ``reference_failed`` = 1 (role ``exact``) and no comparisons.
        schedule: :class:`~gradscope.monitor.Every`, :class:`~gradscope.monitor.LogSpaced` or a callable ``step -> bool``
            (default ``Every(50)``).
        sinks: where rows go (:class:`~gradscope.monitor.CSVSink`, :class:`~gradscope.monitor.JSONLSink`,
            :class:`~gradscope.monitor.TensorBoardSink`, :class:`~gradscope.monitor.LoggingSink`, or any object with
            ``write(rows)`` and ``close()``).
        extra: optional ``extra(problem, exact, estimates) -> {name: float}``, or a list
            of them, for more quantities (ρ(J), ‖J‖₂, the Theorem-1 verdict); see
            :func:`~gradscope.monitor.spectral_norm_extra`. ``exact`` is None when the
            reference raised. An extra that raises loses only its own rows: it leaves a
            row ``error`` = 1 (role ``extra``, estimator: the extra's ``__name__``) and a
            logged, counted error.
        per_param: also record the comparison per parameter tensor (every metric of the
            overall comparison: cosine, relative and absolute error, inner product, norm
            ratio).
        raise_errors: re-raise exceptions from the monitor instead of logging them.
        keep_records: keep rows in memory (for :meth:`dataframe`): ``True`` keeps every
            row (unbounded: a row is a small dict, some 0.5 kB; with ``per_param`` an
            observation makes a few dozen rows per estimator), an int ``n`` keeps the
            newest ``n`` rows (the oldest are dropped and counted in
            ``records_dropped``), ``False`` none. Sinks get every row either way.
        writer_rank: under ``torch.distributed``, the only rank that writes to sinks.

    Attributes:
        records: the rows kept in memory (dicts with keys ``step, layer, role, estimator,
            param, metric, value``).
        errors: number of exceptions caught (each logged; training went on): an
            observed quantity or a whole observation that raised, a sink whose write or
            close failed, plus the errors the file sinks handled themselves (a full disk,
            a deleted file).
        rows_lost: rows that did not reach a sink (a failed write, a file deleted
            mid-run), summed over the sinks.
        records_dropped: rows dropped from ``records`` by an int ``keep_records``.
        warnings: number of numerical failures in the monitor's own computations (an
            estimate whose :class:`~gradscope.Status` is not ok); each is logged and
            recorded (rows ``status_<status>``), none is warned.
        observations: number of completed observations.

    Example:
        >>> import torch, gradscope as gs
        >>> _ = torch.manual_seed(0)
        >>> model = gs.demo.DigitsDEQ(width=16)
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
        keep_records: bool | int = True,
        writer_rank: int = 0,
    ) -> None:
        estimators, exact, schedule, sinks = monitor_options(
            "GradientMonitor", estimators, exact, schedule, sinks, extra, keep_records
        )
        check_bool("GradientMonitor", "per_param", per_param)
        check_bool("GradientMonitor", "raise_errors", raise_errors)
        check_steps("GradientMonitor", "writer_rank", writer_rank, minimum=0)
        self.estimators = estimators
        self.exact = exact
        self.schedule = schedule
        self.sinks = sinks
        self.extra = extra
        self.per_param = per_param
        self.raise_errors = raise_errors
        self.keep_records = keep_records
        self.writer_rank = writer_rank
        self.records: list[dict] = []
        self.records_dropped = 0
        self.warnings = 0
        self.observations = 0
        self.last_error: str | None = None
        self._errors = 0
        self._rows_lost = 0
        self._steps: dict[str, int] = {}  # the last step counted, per layer name
        self._detach: list[Callable[[], None]] = []

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

        remove = attach_layer(layer, due=self.due, observe=self.observe, name=name)
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

        Returns:
            ``h_star`` itself, unchanged.

        """
        step = self._next_step(name) if step is None else step
        if self._scheduled(step) and h_star.requires_grad:
            h_star.register_hook(
                observer_hook(
                    self.observe,
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
        remove = register_torchdeq(
            deq,
            cell,
            due=self.due,
            observe=self.observe,
            name=name,
            training_estimator=training_estimator,
            rtol=rtol,
            max_steps=max_steps,
        )
        self._detach.append(remove)
        return remove

    def detach(self) -> None:
        """Remove every hook the monitor registered."""
        for remove in self._detach:
            remove()
        self._detach.clear()

    def due(self, name: str) -> int | None:
        """Count a step of layer ``name``; its number when the schedule observes it, else None."""
        step = self._next_step(name)
        return step if self._scheduled(step) else None

    def _next_step(self, name: str) -> int:
        self._steps[name] = step = self._steps.get(name, -1) + 1
        return step

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
            The rows recorded: ``error`` rows for the quantities that raised (role
            ``monitor`` when the whole observation failed, with ``reference_failed``).

        """
        step = self._next_step(name) if step is None else step
        g = cotangent.detach()
        device = g.device
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        observation = Observation(step, name, raise_errors=self.raise_errors)
        try:
            with torch.random.fork_rng(devices=rng_devices):
                if prepare is not None:
                    fp, params = prepare()
                    forward, h_star = fp, fp.value
                h_star = check_tensor("GradientMonitor.observe", "h_star", h_star)
                measure(
                    cell,
                    h_star,
                    inputs,
                    g,
                    params,
                    observation=observation,
                    exact=self.exact,
                    estimators=self.estimators,
                    training=training_estimator,
                    forward=forward,
                    per_param=self.per_param,
                    extra=self.extra,
                )
            if torchdeq_stats:
                with observation.guard("forward", "torchdeq"):
                    for key, value in torchdeq_stats.items():
                        observation.add("forward", "torchdeq", key, value)
            self._count_failures(observation)
            rows = observation.rows
            self.observations += 1
        except Exception as error:
            self._fail(error, f"step {step}, {name}")
            rows = [
                row(step, name, "monitor", "monitor", "all", "error", 1.0),
                row(step, name, "exact", self.exact.name, "all", REFERENCE_FAILED, 1.0),
            ]
        for failed in observation.errors:  # quantities that raised: their rows are gone
            self._fail(failed.error, f"step {step}, {name}, {failed.role} {failed.quantity}")
        self._emit(rows)
        return rows

    @property
    def errors(self) -> int:
        """Exceptions caught (each logged), the errors the sinks handled themselves included."""
        return self._errors + sink_count(self.sinks, "errors")

    @property
    def rows_lost(self) -> int:
        """Rows that did not reach a sink (failed writes, files deleted mid-run), all sinks."""
        return self._rows_lost + sink_count(self.sinks, "rows_lost")

    def dataframe(self):
        """The records as a pandas DataFrame (needs pandas).

        Columns: ``step, layer, role, estimator, param, metric, value``. With an int
        ``keep_records`` only the newest rows are in memory (``records_dropped``).

        Returns:
            The DataFrame, one row per record.

        Raises:
            ImportError: pandas is not installed.

        """
        pd = require_pandas()
        return pd.DataFrame(self.records, columns=list(COLUMNS))

    def close(self) -> None:
        """Detach the hooks and close every sink; a failure is logged and counted, not raised.

        A sink whose ``close`` raises (a full disk) does not keep the others open; with
        ``raise_errors=True`` the first such exception is re-raised after all are closed.
        """
        first: Exception | None = None
        try:
            self.detach()
        except Exception as error:
            first = error
            self._fail_quietly(error, "detach")
        closing = close_sinks(self.sinks, self._fail_quietly)
        first = first or closing
        if first is not None and self.raise_errors:
            raise first

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        names = [e.name for e in self.estimators]
        lost = f", rows_lost={self.rows_lost}" if self.rows_lost else ""
        dropped = f", records_dropped={self.records_dropped}" if self.records_dropped else ""
        return (
            f"GradientMonitor(exact={self.exact.name}, estimators={names}, "
            f"observations={self.observations}, errors={self.errors}{lost}{dropped})"
        )
