"""``extra`` callables for the monitor: more quantities per observation (‖J‖₂, ρ(J), Theorem 1)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from ..estimators import Estimator, GradientEstimate
from ..problem import FixedPointProblem
from ..spectral import spectral_norm, spectral_radius
from ..theory import check_ascent

__all__ = [
    "THEOREM1_CODES",
    "Extra",
    "extra_name",
    "spectral_norm_extra",
    "theorem1_code",
    "theorem1_verdict",
    "theory_extra",
]

#: ``extra(problem, exact, estimates) -> {name: float}``: more quantities per observation.
#: ``exact`` is the reference estimate (its status may be a failure), or None when the
#: reference solve raised; ``estimates`` maps each name to its estimate.
Extra = Callable[
    [FixedPointProblem, GradientEstimate | None, Mapping[str, GradientEstimate]], Mapping
]


def extra_name(extra: object) -> str:
    """The label of an ``extra`` callable in the monitor's error rows and log: its ``__name__``.

    Returns:
        The function's ``__name__`` (``<lambda>`` for a lambda), else its type's name.

    """
    name = getattr(extra, "__name__", None)
    return name if isinstance(name, str) else type(extra).__name__


def spectral_norm_extra(method: object | None = None) -> Extra:
    r"""An ``extra`` callable: ``‖J‖₂`` at each observed equilibrium, with its accuracy.

    Calls :func:`gradscope.spectral.spectral_norm` (Lanczos on ``JᵀJ``, one JVP and one
    VJP a step; or the ``method`` given).

    Returns:
        ``extra(problem, exact, estimates) -> {"jacobian_norm": float,
        "jacobian_norm_converged": 0/1}``.

    """

    def extra(problem: FixedPointProblem, exact, estimates) -> dict[str, float]:
        est = spectral_norm(problem, method)  # type: ignore[arg-type]
        return {"jacobian_norm": est.value, "jacobian_norm_converged": float(est.converged)}

    extra.__name__ = extra.__qualname__ = "spectral_norm_extra"
    return extra


#: The Theorem-1 verdicts of :func:`~gradscope.theory.check_ascent` as the numbers
#: :func:`~gradscope.monitor.theory_extra` records (a row's value is a float). Any other verdict (say
#: ``"undetermined"``) is recorded as NaN. Encode with :func:`theorem1_code`, decode
#: with :func:`~gradscope.monitor.theorem1_verdict`: nowhere else.
THEOREM1_CODES = {"holds": 1.0, "vacuous": 0.0, "fails": -1.0}


def theorem1_code(verdict: object) -> float:
    """The number recorded for a verdict (a ``str`` or a ``str`` enum): NaN if not in the table."""
    return THEOREM1_CODES.get(str(getattr(verdict, "value", verdict)), math.nan)


def theorem1_verdict(code: float) -> str:
    """The verdict a recorded ``theorem1`` value stands for; ``"undetermined"`` for NaN or another number.

    Returns:
        ``"holds"``, ``"vacuous"``, ``"fails"`` or ``"undetermined"``.

    Example:
        >>> from gradscope.monitor import theorem1_verdict
        >>> theorem1_verdict(1.0), theorem1_verdict(float("nan"))
        ('holds', 'undetermined')

    """
    for verdict, value in THEOREM1_CODES.items():
        if value == code:
            return verdict
    return "undetermined"


def theory_extra(estimator: Estimator | None = None, *, sample: int | None = 0) -> Extra:
    r"""An ``extra`` callable: ρ(J), ‖J‖₂ and the Theorem-1 verdict at each observation.

    * ``rho_J``: :func:`~gradscope.spectral_radius` (per-sample Arnoldi), the maximum over
      the samples, and ``rho_J_converged`` (0/1);
    * ``jacobian_norm``: :func:`~gradscope.spectral.spectral_norm` (Lanczos on JᵀJ), and
      ``jacobian_norm_converged`` (0/1);
    * ``theorem1`` for ``estimator`` (default: the first estimate after the exact one):
      the verdict of :func:`~gradscope.theory.check_ascent` as a number
      (:data:`~gradscope.monitor.THEOREM1_CODES`: 1 holds, 0 vacuous, −1 fails; read it back with
      :func:`~gradscope.monitor.theorem1_verdict`), with ``theorem1_error_norm`` ‖E‖₂ and
      ``theorem1_threshold`` σ_min²/σ_max.

    Theorem 1 needs σ_min(F_θ) > 0, which fails whenever the state (batch included) has
    more entries than F has parameters: for a batch it is almost always vacuous. With
    ``sample=i`` (default 0) the check is made on sample i alone (the condition for a
    loss of that sample), which is where it can say something; ``sample=None`` checks
    the whole batch.

    Returns:
        The callable, to pass as ``GradientMonitor(extra=...)``.

    """

    def extra(problem: FixedPointProblem, exact, estimates) -> dict[str, float]:
        rho, norm = spectral_radius(problem), spectral_norm(problem)
        values = {
            "rho_J": rho.value,
            "rho_J_converged": float(rho.converged),
            "jacobian_norm": norm.value,
            "jacobian_norm_converged": float(norm.converged),
        }
        chosen = estimator
        if chosen is None:
            others = [e for name, e in estimates.items() if exact is None or name != exact.name]
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
                    check=False,
                )
            check = check_ascent(target, chosen)
            values["theorem1"] = theorem1_code(check.verdict)
            values["theorem1_error_norm"] = check.error_norm
            values["theorem1_threshold"] = check.threshold
        return values

    extra.__name__ = extra.__qualname__ = "theory_extra"
    return extra
