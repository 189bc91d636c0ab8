r"""``gradscope demo``: train a small DEQ on real digits and watch its gradients.

A :class:`~gradscope.demo.DigitsDEQ` (input projection → implicit tanh layer → linear
head) is trained on scikit-learn's bundled digits (1797 real 8×8 images, a seeded 75/25
split) with a phantom gradient, while a :class:`~gradscope.GradientMonitor` compares
the exact, unrolled, Neumann and one-step gradients every few steps and tracks ρ(J),
‖J‖₂ and the Theorem-1 verdict. The run ends with a summary table and a report
folder: ``metrics.csv``, figures (PNG), ``summary.md``, which embeds them, and
``summary.json``.

Numerical failures travel as result codes: the training backward's is read from the
layer's ``status`` after each step and counted by
what it says (the layer does not warn), the monitor's own are in its records.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..cli_options import UsageError, parse_estimators
from ..estimators import Estimator, Exact, Neumann, OneStep, Unrolled
from ..estimators.estimate import run_estimator
from ..monitor import CSVSink, Every, GradientMonitor, theory_extra
from ..problem import FixedPointProblem
from ..solvers import GMRES
from .data import DigitsData, load_digits_tensors
from .model import DigitsDEQ, equilibrium_problem
from .progress import progress
from .report import figures, markdown, summarise, table

__all__ = ["Settings", "run_demo", "settings", "time_backwards", "train"]

#: Mini-batch size of the training.
BATCH = 64


@dataclass(frozen=True)
class Settings:
    """The demo's run, from the command line's arguments (defaults resolved, checked)."""

    estimator: Estimator
    steps: int
    every: int
    width: int
    device: torch.device
    out: Path
    optimizer: str
    seed: int
    quick: bool


@dataclass
class Training:
    """What the training loop produced: losses, wall time, the backward's failures."""

    losses: list[float]
    seconds: float
    failures: dict[str, int]


def settings(args: argparse.Namespace) -> Settings:
    """Resolve the defaults (``--quick``: fewer steps, a smaller model) and check the values.

    Returns:
        The resolved settings.

    Raises:
        UsageError: a bad estimator, a non-positive count, an unknown or absent device.

    """
    (estimator,) = parse_estimators(args.estimator)[:1]
    steps = args.steps if args.steps is not None else (40 if args.quick else 300)
    every = args.every if args.every is not None else (10 if args.quick else 20)
    width = args.width if not args.quick or args.width != 48 else 32
    if steps < 1 or every < 1 or width < 1:
        raise UsageError("--steps, --every and --width must be positive integers")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UsageError(f"--device {args.device!r}: expected cpu or cuda (e.g. cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    out = Path(args.out or "gradscope-report")
    return Settings(
        estimator, steps, every, width, device, out, args.optimizer, args.seed, args.quick
    )


def exact_rtol(dtype: torch.dtype) -> float:
    """The exact solves' tolerance: 1e-5 in float32 (its attainable floor near ρ(J) → 1), 1e-8 in float64."""
    return 1e-8 if dtype == torch.float64 else 1e-5


def run_demo(args: argparse.Namespace) -> int:
    """Train, monitor, summarise and write the report folder; returns the exit code."""
    s = settings(args)
    s.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)
    try:
        data = load_digits_tensors(seed=s.seed, device=s.device)
    except ImportError as error:
        raise UsageError(f"{error} (pip install 'gradscope[data]')") from None
    model = DigitsDEQ(width=s.width, estimator=s.estimator).to(s.device)
    model.layer.warn = False  # its failures are read from last_backward.status instead
    compared = [e for e in (Neumann(5, 0.5), Unrolled(5, 0.5), OneStep()) if e != s.estimator]
    monitor = GradientMonitor(
        estimators=compared,
        exact=Exact(GMRES(rtol=exact_rtol(data.x_train.dtype))),
        schedule=Every(s.every),
        sinks=[CSVSink(s.out / "metrics.csv")],
        extra=theory_extra(s.estimator if not isinstance(s.estimator, Exact) else None),
        per_param=True,
    )
    monitor.attach(model.layer, name="deq")
    training = train(model, monitor, data, s, quiet=args.quiet or args.json)
    monitor.close()
    model.eval()
    with torch.no_grad():
        test_accuracy = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    optimizer_name = "SGD, momentum 0.9" if s.optimizer == "sgd" else "AdamW"
    summary = summarise(
        monitor,
        s.estimator,
        test_accuracy,
        training.seconds,
        s.steps,
        s.every,
        s.width,
        training.losses,
        data,
        optimizer_name,
    )
    _, problem, g = equilibrium_problem(model, data.x_train[:BATCH], data.y_train[:BATCH])
    summary["backward"] = time_backwards(
        problem,
        g,
        [Exact(GMRES(rtol=exact_rtol(problem.dtype))), s.estimator, *compared],
        repeats=3 if s.quick else 10,
    )
    summary["training_warnings"] = training.failures
    written = figures(monitor, s.out, problem, s.estimator)
    (s.out / "summary.md").write_text(markdown(summary, written))
    (s.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif not args.quiet:
        print(table(summary))
        print(f"\nreport: {s.out / 'summary.md'} ({len(written)} figures, metrics.csv)")
    return 0


def _optimizer(model: torch.nn.Module, name: str) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # Adam drives ρ(J) towards 1 on this model: the monitor shows what that does
    return torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.05)


def train(
    model: DigitsDEQ, monitor: GradientMonitor, data: DigitsData, s: Settings, *, quiet: bool
) -> Training:
    """The training loop: ``s.steps`` mini-batches of cross-entropy, the monitor attached.

    After each backward the layer's :attr:`~gradscope.ImplicitLayer.last_backward` status
    is read; failures are counted by estimator and what the status means.

    Returns:
        The losses, the wall time and the failure counts.

    """
    optimizer = _optimizer(model, s.optimizer)
    generator = torch.Generator().manual_seed(s.seed)
    n_train = data.x_train.shape[0]
    bar = progress(s.steps, quiet)
    failures: Counter[str] = Counter()
    losses, latest_cosine = [], math.nan
    start = time.perf_counter()
    for _ in range(s.steps):
        index = torch.randint(0, n_train, (BATCH,), generator=generator).to(s.device)
        x, y = data.x_train[index], data.y_train[index]
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        stats = model.layer.last_backward
        if stats is not None and not stats.status.ok:
            failures[f"{stats.estimator}: {stats.status.help}"] += 1
        optimizer.step()
        losses.append(float(loss.detach()))
        latest_cosine = _latest_training_cosine(monitor, latest_cosine)
        if bar is not None:
            accuracy = float((logits.argmax(1) == y).float().mean())
            bar.set_postfix(
                loss=f"{losses[-1]:.3f}", acc=f"{accuracy:.2f}", cos=f"{latest_cosine:.3f}"
            )
            bar.update(1)
    if bar is not None:
        bar.close()
    return Training(losses, time.perf_counter() - start, dict(failures))


def _latest_training_cosine(monitor: GradientMonitor, previous: float) -> float:
    """The training estimator's last recorded cosine to the exact gradient (else ``previous``)."""
    rows = [
        r
        for r in monitor.records[-400:]
        if r["metric"] == "cosine" and r["role"] == "training" and r["param"] == "all"
    ]
    return rows[-1]["value"] if rows else previous


def time_backwards(
    problem: FixedPointProblem, g: torch.Tensor, estimators: list, repeats: int
) -> list[dict]:
    """Median backward time of each estimator, each on a fresh problem (graph built inside).

    The monitor's own timings share one graph of F between estimators; here each run
    pays for its own, as a training backward does. Each row carries the last run's
    status (``"success"``, or how it failed).

    Returns:
        One row per distinct estimator: ``estimator``, ``backward_ms``, ``vjps``, ``status``
        and ``speedup_vs_exact`` (the first estimator's time over this one's).

    """
    rows, seen = [], set()
    for estimator in estimators:
        if estimator.name in seen:
            continue
        seen.add(estimator.name)
        times, vjps, status = [], 0, None
        for _ in range(repeats):
            fresh = FixedPointProblem(
                problem.fn, problem.h_star, problem.inputs, problem.params, check=False
            )
            estimate = run_estimator(fresh, g, estimator, call="demo")
            cost = estimate.cost
            assert cost is not None  # run_estimator always records the cost
            times.append(cost.seconds)
            vjps, status = cost.vjps, estimate.status
        backward_ms = 1e3 * statistics.median(times)  # StatisticsError when repeats < 1
        assert status is not None  # so at least one run set it
        rows.append(
            {
                "estimator": estimator.name,
                "backward_ms": backward_ms,
                "vjps": vjps,
                "status": status.value,
            }
        )
    exact_ms = rows[0]["backward_ms"]
    for row in rows:
        row["speedup_vs_exact"] = exact_ms / row["backward_ms"]
    return rows
