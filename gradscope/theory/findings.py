"""The report's lines and the report itself: :class:`Finding` and :class:`TheoryReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..metrics import Comparison
from ..spectral import SpectralEstimate
from .ascent import AscentCheck
from .damping import DampingChoice, DampingLimit
from .steps import StepsNeeded
from .verdict import Verdict

__all__ = ["Finding", "TheoryReport"]


@dataclass(frozen=True)
class Finding:
    """One line of a :class:`~gradscope.theory.TheoryReport`: a named value, what it means and its source.

    Example:
        >>> import gradscope as gs
        >>> finding = gs.theory.Finding("μ", 0.5 + 0.25j, "the leading eigenvalue", "derived")
        >>> finding.to_dict()
        {'name': 'μ', 'value': [0.5, 0.25], 'meaning': 'the leading eigenvalue', 'source': 'derived'}

    """

    name: str
    value: object
    meaning: str
    source: str

    def to_dict(self) -> dict:
        """Plain-Python form (numbers, strings, None)."""
        value = self.value
        if isinstance(value, Verdict):
            value = value.value
        if isinstance(value, complex):
            value = [value.real, value.imag]
        return {"name": self.name, "value": value, "meaning": self.meaning, "source": self.source}


def format_value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, complex):
        return f"{value:.4g}"
    return str(value)


@dataclass
class TheoryReport:
    """What the theory says about one estimator at one equilibrium.

    Attributes:
        estimator: the estimator's name.
        findings: the :class:`~gradscope.theory.Finding` lines, in reading order.
        recommendation: plain-words advice (λ range, optimal λ, k needed).
        radius: ρ(J), a :class:`~gradscope.spectral.SpectralEstimate` (with the eigenvalues).
        norm: ‖J‖₂, a :class:`~gradscope.spectral.SpectralEstimate`.
        smallest_singular_value: σ_min(I − J), a :class:`~gradscope.spectral.SpectralEstimate`.
        limit: the admissible damping, a :class:`~gradscope.theory.DampingLimit`.
        optimum: the optimal damping, a :class:`~gradscope.theory.DampingChoice`.
        steps: the k needed, a :class:`~gradscope.theory.StepsNeeded` (None when no damping converges).
        ascent: the Theorem-1 :class:`~gradscope.theory.AscentCheck`.
        comparison: estimate vs exact (None without a cotangent).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.2, 0.1], [0.0, 0.3]], dtype=torch.float64)
        >>> p = {"W": W, "b": torch.zeros(2, dtype=torch.float64)}
        >>> h = torch.zeros(2, dtype=torch.float64)  # F(h) = W h + b with b = 0: h* = 0 exactly
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h + p["b"], p, h)
        >>> report = gs.check_theory(problem, gs.Neumann(10, 1.0))
        >>> report.estimator, report["Theorem 1"].value == "holds", report.limit.exists
        ('Neumann(10, 1)', True, True)

    """

    estimator: str
    findings: list[Finding]
    recommendation: str
    radius: SpectralEstimate = field(repr=False)
    norm: SpectralEstimate = field(repr=False)
    smallest_singular_value: SpectralEstimate = field(repr=False)
    limit: DampingLimit = field(repr=False)
    optimum: DampingChoice = field(repr=False)
    steps: StepsNeeded | None = field(repr=False)
    ascent: AscentCheck = field(repr=False)
    comparison: Comparison | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> Finding:
        for f in self.findings:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        """Plain-Python form: estimator, findings (list of dicts), recommendation."""
        return {
            "estimator": self.estimator,
            "findings": [f.to_dict() for f in self.findings],
            "recommendation": self.recommendation,
        }

    def __str__(self) -> str:
        width = max(len(f.name) for f in self.findings)
        lines = [f"gradscope theory report — {self.estimator}", ""]
        for f in self.findings:
            lines.append(f"  {f.name:<{width}}  {format_value(f.value):>10}  {f.meaning}")
            lines.append(f"  {'':<{width}}  {'':>10}  [{f.source}]")
        lines += ["", "Recommendation:", *("  " + s for s in self.recommendation.split("\n"))]
        return "\n".join(lines)
