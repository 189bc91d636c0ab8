"""``gradscope check``: the theory report and the comparisons for the user's own model.

The user's factory is loaded and its model built by :mod:`gradscope.cli_factory`
(:data:`FACTORY_HELP`; a malformed result is a
:class:`~gradscope.cli_options.UsageError`, exit 2, a model that cannot be checked a
:class:`~gradscope.cli_options.ModelError`, exit 3). Numerical failures (an equilibrium
search or a solve that did not converge, a series that grew, an h* that is not a fixed
point) are findings of the check, read from the results' statuses and listed in its
output; nothing is warned.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from .cli_factory import FACTORY_HELP, Built, build_from_factory, load_factory
from .cli_options import emit, parse_estimators
from .demo import spectrum_figure
from .estimators import Exact, GradientEstimate
from .estimators.estimate import run_estimator
from .metrics import compare
from .monitor import COMPARISON_METRICS
from .problem import FixedPointProblem
from .theory import check_theory

__all__ = [
    "FACTORY_HELP",
    "Built",
    "build_from_factory",
    "equilibrium_findings",
    "load_factory",
    "run_check",
    "write_check_folder",
]


# ---------------------------------------------------------------------------- the check
def equilibrium_findings(built: Built) -> list[str]:
    """What is wrong with h*: a search that did not converge, a residual above rtol."""
    findings = []
    found, problem = built.found, built.problem
    if found is not None and not found.converged:
        findings.append(
            f"gradscope.check: the equilibrium search (find_fixed_point) did not converge "
            f"after {found.steps} steps: relative residual {found.residual:.3e}. Give 'h_star' "
            "or a better 'h0' in the factory, or check that F is contractive."
        )
    if not problem.converged:
        findings.append(
            f"gradscope.check: h* is not a fixed point to rtol={problem.rtol:g}: max relative "
            f"residual ‖F(h*) − h*‖/‖F(h*)‖ = {problem.residual.max_relative:.3e}. Gradients "
            "are computed at this h* as given; solve it more tightly, or set 'rtol' in the "
            "factory if you know."
        )
    return findings


def _estimate(problem, g, estimator, findings: list[str]) -> GradientEstimate:
    """Run ``estimator``; a failure (its status) goes to ``findings``."""
    estimate = run_estimator(problem, g, estimator, call="check")
    if not estimate.status.ok:
        findings.append(estimate.failure_message("check"))
    return estimate


def run_check(args: argparse.Namespace) -> int:
    """``gradscope check``: the theory report and the comparisons for the user's model."""
    estimators = parse_estimators(args.estimators)
    built = build_from_factory(load_factory(args.target), args.seed)
    problem, g = built.problem, built.cotangent
    findings = equilibrium_findings(built)
    exact = _estimate(problem, g, Exact(), findings)
    out: dict = {"problem": repr(problem), "cotangent": built.source, "estimators": {}}
    lines = [repr(problem), f"cotangent: {built.source}"]
    if built.found is not None:
        lines.append(f"equilibrium found: {built.found!r}")
    lines.append(f"exact gradient: {exact.solution!r}")
    violations = [] if exact.status.ok else ["the exact solve did not converge"]
    comparisons = []
    for est in (e for e in estimators if not isinstance(e, Exact)):
        comparison = compare(_estimate(problem, g, est, findings), exact)
        report = check_theory(problem, est, g)
        comparisons.append(comparison)
        entry: dict[str, object] = {
            "comparison": comparison.to_dict(),
            "theory": report.to_dict(),
        }
        out["estimators"][est.name] = entry
        lines += ["", str(report), "", comparison.table()]
        if not comparison.ascent:
            violations.append(f"{est.name} is not an ascent direction (⟨∇̂, ∇⟩ ≤ 0)")
        if report.ascent.verdict == "fails":  # sufficient only: a finding, not a violation
            entry["theorem1"] = "fails (sufficient condition not met)"
    out["warnings"] = list(dict.fromkeys(findings))
    lines += [""] + [f"warning: {m}" for m in out["warnings"]]
    out["violations"] = violations
    lines += [f"violation: {v}" for v in violations]
    if args.out:
        write_check_folder(Path(args.out), out, lines, problem, estimators, comparisons)
    emit(args, out, "\n".join(lines))
    return 1 if (violations and args.fail_on_violation) else 0


def write_check_folder(
    folder: Path,
    out: dict,
    lines: list[str],
    problem: FixedPointProblem,
    estimators: list,
    comparisons: list,
) -> None:
    """check.json, check.txt, comparison.csv (tidy rows), spectrum.png and summary.md."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "check.json").write_text(json.dumps(out, indent=2, default=str))
    (folder / "check.txt").write_text("\n".join(lines) + "\n")
    with (folder / "comparison.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["estimator", "reference", "part", "metric", "value"])
        for c in comparisons:
            parts = [("all", c.overall), *c.per_param.items()]
            parts += [(f"input[{i}]", a) for i, a in enumerate(c.per_input) if a is not None]
            for part, agreement in parts:
                for metric in COMPARISON_METRICS:
                    writer.writerow(
                        [c.estimate, c.reference, part, metric, getattr(agreement, metric)]
                    )
                writer.writerow([c.estimate, c.reference, part, "ascent", int(agreement.ascent)])
    dampings = sorted({float(e.damping) for e in estimators if hasattr(e, "damping")}) or None
    spectrum_figure(problem, dampings, folder / "spectrum.png", "at h*")
    (folder / "summary.md").write_text(
        "\n".join(
            [
                "# gradscope check report",
                "",
                "```",
                *lines,
                "```",
                "",
                "## spectrum",
                "",
                "The eigenvalues of J = ∂F/∂h at h* (Ritz values) and, for each damping λ of the",
                "checked phantom estimators, the disk where μ must lie for ρ(B_λ) < 1.",
                "",
                "![spectrum](spectrum.png)",
                "",
            ]
        )
    )
