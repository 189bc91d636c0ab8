r"""What :func:`~gradscope.theory.check_theory` recommends: the λ range, the best λ, the k needed.

:class:`Setting` is the damping and step count the judged estimator runs with (the
optimal damping for :class:`~gradscope.Exact`); :func:`recommend` turns the findings into
advice in plain words.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..estimators import Estimator, Neumann, OneStep, Unrolled
from .ascent import AscentCheck
from .damping import DampingChoice, DampingLimit
from .steps import StepsNeeded
from .verdict import Verdict

__all__ = ["Setting", "recommend"]


@dataclass(frozen=True)
class Setting:
    """The damping λ and steps k of the judged estimator.

    Attributes:
        phantom: whether it is a phantom gradient (:class:`~gradscope.Neumann`,
            :class:`~gradscope.Unrolled`, :class:`~gradscope.OneStep`, the k = 1, λ = 1 case).
        damping: its λ, or the optimal λ in (0, 1] for other estimators.
        steps: its k (None for other estimators).

    """

    phantom: bool
    damping: float
    steps: int | None

    @classmethod
    def of(cls, estimator: Estimator, optimum: DampingChoice) -> Setting:
        """The setting of ``estimator``; the ``optimum``'s λ when it has none."""
        if isinstance(estimator, (Neumann, Unrolled, OneStep)):
            damping = float(getattr(estimator, "damping", 1.0))
            return cls(True, damping, int(getattr(estimator, "steps", 1)))
        return cls(False, optimum.damping, None)

    def damping_for_steps(self, limit: DampingLimit, optimum: DampingChoice) -> float | None:
        """The λ at which to count the k needed: this one if admissible, else the optimum.

        Returns:
            The λ, or None when neither converges.

        """
        if self.phantom and limit.admits(self.damping):
            return self.damping
        return optimum.damping if optimum.converges else None


def recommend(
    setting: Setting,
    limit: DampingLimit,
    optimum: DampingChoice,
    steps: StepsNeeded | None,
    ascent: AscentCheck,
    rho: float,
    tol: float,
) -> str:
    """The advice of :func:`~gradscope.theory.check_theory` in plain words, one line a point."""
    phantom, lam, k = setting.phantom, setting.damping, setting.steps
    out = []
    if not limit.exists:
        out.append(
            "No damping makes a phantom gradient converge here (J has an eigenvalue with "
            "Re μ ≥ 1). Use Exact(GMRES()) and check that the equilibrium is stable."
        )
        return "\n".join(out)
    assert limit.value is not None  # limit.exists is exactly ``value is not None``
    top = min(1.0, limit.value)
    out.append(
        f"Admissible damping: 0 < λ {'≤' if limit.value > 1 else '<'} {top:.3g}. "
        f"Best λ in (0, 1]: {optimum.damping:.3g} (ρ(B_λ) = {optimum.radius:.3g})."
    )
    if phantom and not limit.admits(lam):
        out.append(
            f"Your λ = {lam:g} is outside this range: the Neumann series diverges; "
            f"lower it to about {optimum.damping:.2g}."
        )
    if steps is not None:
        where = f"at λ = {steps.damping:g}"
        if steps.tolerance_steps is not None:
            out.append(
                f"Steps {where}: k ≥ {steps.tolerance_steps} gives relative adjoint error ≤ "
                f"{tol:g} (from ‖B_λ^k‖₂)."
            )
        if steps.theorem1_steps is not None:
            out.append(f"Theorem 1 is guaranteed {where} from k = {steps.theorem1_steps}.")
        if (
            phantom
            and k is not None
            and steps.tolerance_steps is not None
            and k < steps.tolerance_steps
        ):
            out.append(
                f"Your k = {k} is below that: expect a biased gradient (see the cosine above)."
            )
    if ascent.verdict is Verdict.VACUOUS:
        out.append(
            "Theorem 1 cannot certify ascent here (σ_min(F_θ) ≈ 0); rely on the measured "
            "cosine with the exact gradient."
        )
    if rho >= 1:
        out.append(
            "ρ(J) ≥ 1: fixed-point backward solvers (as in TorchDEQ) will not converge; "
            "Exact(GMRES()) still can, as long as σ_min(I − J) > 0."
        )
    return "\n".join(out)
