"""The demo's report: the summary of the monitor's records, the text table, the figures.

The summary is a plain dict (written as ``summary.json``); :func:`table` prints it,
:func:`markdown` embeds it and the figures in ``summary.md``.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch

from .. import plots
from ..monitor import THEOREM1_CODES, theorem1_verdict
from ..monitor.records import observations_without_reference
from ..problem import FixedPointProblem
from ..spectral import spectral_radius

__all__ = ["figures", "markdown", "median", "spectrum_figure", "summarise", "table"]


def median(values: list[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else math.nan


def summarise(
    monitor, estimator, test_accuracy, seconds, steps, every, width, losses, data, optimizer_name
) -> dict:
    """The run in a dict: setting, accuracy, and per estimator the cosines and errors recorded.

    ``observations_without_reference`` of ``observations_recorded`` had no reference
    (their exact solve failed or raised: no comparison); ``rows_lost`` rows did not
    reach a sink, ``records_dropped`` were dropped from memory (``keep_records``).

    Returns:
        The summary.

    """
    records = monitor.records
    without_reference, recorded = observations_without_reference(records)
    overall = [r for r in records if r["param"] == "all"]

    def values(role: str | None, name: str | None, metric: str) -> list[float]:
        return [
            r["value"]
            for r in overall
            if r["metric"] == metric
            and (role is None or r["role"] == role)
            and (name is None or r["estimator"] == name)
            and isinstance(r["value"], (int, float))
            and math.isfinite(r["value"])
        ]

    names = [estimator.name] + [e.name for e in monitor.estimators if e.name != estimator.name]
    rows = []
    for name in names:
        cos = values(None, name, "cosine")
        rows.append(
            {
                "estimator": name,
                "training": name == estimator.name,
                "cosine_median": median(cos),
                "cosine_min": min(cos) if cos else math.nan,
                "relative_error_median": median(values(None, name, "relative_error")),
            }
        )
    rho = values("extra", None, "rho_J")
    verdicts = [
        theorem1_verdict(r["value"])
        for r in overall
        if r["role"] == "extra" and r["metric"] == "theorem1"
    ]
    return {
        "data": f"scikit-learn digits: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images",
        "model": f"DigitsDEQ, width {width}",
        "training_estimator": estimator.name,
        "optimizer": optimizer_name,
        "steps": steps,
        "monitor_every": every,
        "seconds": seconds,
        "final_loss": losses[-1],
        "test_accuracy": test_accuracy,
        "exact_converged_all": all(v == 1.0 for v in values("exact", None, "converged")),
        "rho_J_start": rho[0] if rho else math.nan,
        "rho_J_end": rho[-1] if rho else math.nan,
        "theorem1": _count_verdicts(verdicts),
        "observations": monitor.observations,
        "observations_recorded": recorded,
        "observations_without_reference": without_reference,
        "monitor_errors": monitor.errors,
        "monitor_failures": monitor.warnings,
        "rows_lost": getattr(monitor, "rows_lost", 0),
        "records_dropped": getattr(monitor, "records_dropped", 0),
        "estimators": rows,
    }


def _count_verdicts(verdicts: list[str]) -> dict[str, int]:
    """How many observations got each Theorem-1 verdict (``undetermined`` only if any)."""
    counts = {verdict: verdicts.count(verdict) for verdict in THEOREM1_CODES}
    others = len(verdicts) - sum(counts.values())
    if others:
        counts["undetermined"] = others
    return counts


def table(s: dict) -> str:
    """The summary as the text table the demo prints."""
    timing = {r["estimator"]: r for r in s.get("backward", [])}
    exact = next(
        iter(timing.values()), {"estimator": "Exact(GMRES)", "backward_ms": math.nan, "vjps": 0}
    )
    head = f"{'estimator':<20}{'cosine median':>14}{'cosine min':>12}{'rel.err median':>16}{'backward ms':>13}{'VJPs':>6}{'speed-up':>10}"
    lines = [
        f"gradscope demo — {s['model']} trained {s['steps']} steps with {s['training_estimator']} "
        f"({s['optimizer']}) on {s['data']}",
        f"test accuracy {s['test_accuracy']:.3f}   final loss {s['final_loss']:.3f}   {s['seconds']:.1f} s   "
        f"{s['observations']} observations (every {s['monitor_every']} steps)",
        "",
        head,
        f"{exact['estimator']:<20}{'1':>14}{'1':>12}{'0':>16}{exact['backward_ms']:>13.2f}{exact['vjps']:>6}{'1.0×':>10}",
    ]
    for r in s["estimators"]:
        t = timing.get(
            r["estimator"], {"backward_ms": math.nan, "vjps": 0, "speedup_vs_exact": math.nan}
        )
        name = r["estimator"] + (" *" if r["training"] else "")
        lines.append(
            f"{name:<20}{r['cosine_median']:>14.4f}{r['cosine_min']:>12.4f}{r['relative_error_median']:>16.3e}"
            f"{t['backward_ms']:>13.2f}{t['vjps']:>6}{t['speedup_vs_exact']:>9.1f}×"
        )
    t = s["theorem1"]
    lines += [
        "(* = the gradient the model trains with. cosine and rel.err: at the monitored steps, against the exact",
        " gradient; backward ms: median of one gradient at the trained equilibrium, graph of F included)",
        "",
        f"ρ(J) at the equilibrium: {s['rho_J_start']:.3f} → {s['rho_J_end']:.3f}",
        f"Theorem 1 (Geng et al. 2021) for {s['training_estimator']} on one sample: "
        + ", ".join(f"{verdict} {count}" for verdict, count in t.items())
        + f" of {sum(t.values())} observations"
        + (
            " (a sufficient condition: 'fails' promises nothing either way; see the cosines)"
            if t["fails"]
            else ""
        ),
    ]
    if s.get("observations_without_reference"):
        lines.append(
            f"{s['observations_without_reference']} of {s['observations_recorded']} observations "
            "without a reference (the exact solve failed: not compared; the "
            "reference_failed and status_* rows of metrics.csv say which)"
        )
    if s.get("monitor_errors"):
        lines.append(
            f"the monitor caught {s['monitor_errors']} errors (logged; the error rows of "
            "metrics.csv say which quantities)"
        )
    if s.get("rows_lost"):
        lines.append(f"{s['rows_lost']} rows did not reach metrics.csv (logged)")
    if s.get("records_dropped"):
        lines.append(
            f"{s['records_dropped']} rows were dropped from memory (keep_records); "
            "metrics.csv has them"
        )
    for message, count in s.get("training_warnings", {}).items():
        lines.append(f"the training backward failed {count}×: {message}")
    if s.get("monitor_failures"):
        lines.append(
            f"the monitor's own solves or estimates failed {s['monitor_failures']}× "
            "(logged; the status_* rows of metrics.csv say which)"
        )
    return "\n".join(lines)


def markdown(s: dict, figures: list[Path]) -> str:
    """``summary.md``: the table, a few words on reading it, and the figures."""
    body = ["# gradscope demo report", "", "```", table(s), "```", ""]
    body += [
        "Every row compares one gradient estimator with the exact implicit gradient at the same",
        "equilibrium and cotangent (cosine 1 and relative error 0 are a perfect match).",
        "ρ(J) < 1 keeps the forward iteration and the Neumann series convergent; Theorem 1 is a",
        "sufficient condition for the phantom gradient to be a descent direction",
        "(vacuous: it says nothing, look at the measured cosine).",
        "",
    ]
    for path in figures:
        body += [f"## {path.stem.replace('_', ' ')}", "", f"![{path.stem}]({path.name})", ""]
    return "\n".join(body)


def figures(monitor, out: Path, problem: FixedPointProblem, estimator) -> list[Path]:
    """Every figure of the records (:func:`gradscope.plots.report`) and the spectrum at the end."""
    written = plots.report(monitor, out)
    damping = getattr(estimator, "damping", None)
    written.append(spectrum_figure(problem, damping, out / "spectrum.png", "trained model"))
    return written


def spectrum_figure(problem: FixedPointProblem, damping, path: Path, what: str) -> Path:
    """The Ritz values of J at h* (Arnoldi) with the stability disk of each damping, as PNG."""
    rho = spectral_radius(problem)
    ritz = rho.ritz_values
    assert ritz is not None  # Arnoldi (the default method) always returns its Ritz values
    eigenvalues = ritz[torch.isfinite(ritz.real)].cpu()
    title = f"Ritz values of J ({what}): ρ(J) = {rho.value:.3f}"
    return plots.save(plots.plot_spectrum(eigenvalues, damping=damping, title=title), path)
