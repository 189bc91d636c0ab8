r"""Sweeping the phantom gradients' (k, λ) grid against the exact gradient.

For each method (UPG, NPG), each number of steps k and each damping λ, one estimate is
compared with one exact reference: the grid a user reads to pick k and λ (the paper's
ablation, Geng et al. 2021 Fig. 3, asks the same question of accuracy after training).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._checks import check_damping, check_iterable, check_like, check_steps, fail
from .estimators import (
    DampedSteps,
    Exact,
    GradientEstimate,
    Neumann,
    Unrolled,
    estimate_gradient,
)
from .estimators.estimate import run_estimator
from .metrics import compare
from .problem import FixedPointProblem, check_problem

__all__ = ["SweepResult", "sweep"]

METRICS = ("cosine", "relative_error", "absolute_error", "inner", "norm_ratio")


@dataclass
class SweepResult:
    """Rows of a (method, k, λ) sweep; one row per cell of the grid.

    Each row has ``method`` (``"Unrolled"`` or ``"Neumann"``), ``steps``, ``damping``,
    the :class:`~gradscope.metrics.Agreement` numbers (``cosine``, ``relative_error``,
    ``absolute_error``, ``inner``, ``norm_ratio``), ``ascent``, ``vjps``, ``seconds`` and
    ``warning`` (the :class:`~gradscope.ConvergenceWarning` of that cell, if any: a
    diverging Neumann series).

    Example:
        >>> from gradscope.sweeps import SweepResult
        >>> cell = {"method": "Neumann", "damping": 0.5}
        >>> result = SweepResult([{**cell, "steps": 1, "relative_error": 0.4},
        ...                       {**cell, "steps": 5, "relative_error": 0.1}])
        >>> result.best("relative_error")["steps"], len(result.rows)
        (5, 2)

    """

    rows: list[dict] = field(default_factory=list)
    reference: GradientEstimate | None = None

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows as CSV and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def to_dataframe(self):
        """The rows as a :class:`pandas.DataFrame` (pandas is needed for this call only)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def table(self, metric: str = "cosine", method: str = "Neumann") -> str:
        """A text grid of one metric: rows k, columns λ."""
        if metric not in METRICS:
            fail("SweepResult.table", f"metric={metric!r}; expected one of {METRICS}.")
        rows = [r for r in self.rows if r["method"] == method]
        if not rows:
            fail(
                "SweepResult.table",
                f"no rows for method={method!r}; the sweep has {sorted({r['method'] for r in self.rows})}.",
            )
        ks = sorted({r["steps"] for r in rows})
        lams = sorted({r["damping"] for r in rows})
        cell = {(r["steps"], r["damping"]): r[metric] for r in rows}
        lines = [
            f"{method}: {metric} (rows k, columns λ)",
            "k \\ λ " + "".join(f"{lam:>10g}" for lam in lams),
        ]
        for k in ks:
            lines.append(f"{k:>5} " + "".join(f"{cell[(k, lam)]:>10.4g}" for lam in lams))
        return "\n".join(lines)

    def best(self, metric: str = "relative_error", method: str = "Neumann") -> dict:
        """The row with the smallest ``metric`` (largest for ``cosine`` and ``inner``)."""
        rows = [r for r in self.rows if r["method"] == method]
        sign = -1 if metric in ("cosine", "inner") else 1
        return min(rows, key=lambda r: sign * r[metric])


def sweep(
    problem: FixedPointProblem,
    cotangent: torch.Tensor,
    steps: Iterable[int] = range(1, 10),
    dampings: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    methods: Sequence[type] = (Unrolled, Neumann),
    reference: GradientEstimate | None = None,
) -> SweepResult:
    """Compare UPG and NPG over a (k, λ) grid with the exact gradient.

    Args:
        problem: the equilibrium.
        cotangent: ``g = ∂ℓ/∂h*``.
        steps: the k values (each ≥ 1).
        dampings: the λ values (each in (0, 1]).
        methods: estimator classes built as ``cls(steps, damping)``:
            :class:`~gradscope.Unrolled`, :class:`~gradscope.Neumann`, or your own subclass
            of :class:`~gradscope.estimators.DampedSteps`.
        reference: the exact gradient, if already computed (default: ``Exact()``).

    Returns:
        A :class:`~gradscope.sweeps.SweepResult`.

    Example:
        >>> import torch, gradscope as gs
        >>> fn = lambda p, h, x: torch.tanh(p["W"] @ h + x)
        >>> p = {"W": 0.5 * torch.eye(2, dtype=torch.float64)}
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> fp = gs.find_fixed_point(lambda h, x: fn(p, h, x), x, h0=0 * x, rtol=1e-13)
        >>> problem = gs.FixedPointProblem.from_function(fn, p, fp.value, x)
        >>> result = gs.sweeps.sweep(problem, torch.ones(2, dtype=torch.float64), steps=[1, 5], dampings=[0.5, 1.0])
        >>> len(result.rows), result.best("relative_error")["steps"]
        (8, 5)

    """
    problem = check_problem("sweep", problem)
    check_like("sweep", "cotangent", cotangent, problem.h_star, "h*")
    steps = check_iterable("sweep", "steps", steps)
    dampings = check_iterable("sweep", "dampings", dampings)
    methods = check_iterable("sweep", "methods", methods)
    if reference is not None and not isinstance(reference, GradientEstimate):
        fail(
            "sweep",
            f"reference is a {type(reference).__name__}; expected a "
            "gradscope.estimators.GradientEstimate (from gradscope.estimate_gradient).",
            TypeError,
        )
    for k in steps:
        check_steps("sweep", "steps", k)
    for lam in dampings:
        check_damping("sweep", lam)
    for m in methods:
        if not (isinstance(m, type) and issubclass(m, DampedSteps)):
            fail(
                "sweep",
                f"methods contains {m!r}; expected estimator classes built as cls(steps, damping): "
                "gradscope.Unrolled, gradscope.Neumann or a subclass of "
                "gradscope.estimators.DampedSteps.",
                TypeError,
            )
    if not steps or not dampings:
        fail("sweep", "steps and dampings must not be empty.")
    reference = estimate_gradient(problem, cotangent, Exact()) if reference is None else reference
    result = SweepResult(reference=reference)
    for method in methods:
        for k in steps:
            for lam in dampings:
                # A diverging series in one cell is a finding of the sweep: recorded in
                # the row's "warning" column rather than warned once per cell.
                estimate = run_estimator(problem, cotangent, method(k, float(lam)), call="sweep")
                c = compare(estimate, reference)
                row = {"method": method.__name__, "steps": k, "damping": float(lam)}
                row.update({m: getattr(c, m) for m in METRICS})
                row["ascent"] = c.ascent
                row["vjps"] = estimate.cost.vjps if estimate.cost else None
                row["seconds"] = estimate.cost.seconds if estimate.cost else None
                row["warning"] = "" if estimate.status.ok else estimate.failure_message("sweep")
                result.rows.append(row)
    return result
