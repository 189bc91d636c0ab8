r"""The verdict of Theorem 1 (Geng et al. 2021) at one equilibrium: holds, fails or vacuous.

Theorem 1 is a sufficient condition (:ref:`theory-theorem1`): with
``E = P(I − Jᵀ) − F_θᵀ``, ``‖E‖₂ ≤ σ_min(F_θ)²/σ_max(F_θ)`` implies ``⟨∇̂, ∇⟩ ≥ 0`` for
every cotangent. :class:`~gradscope.theory.Verdict` names the three outcomes of checking it.
"""

from __future__ import annotations

import enum

__all__ = ["THEOREM1", "Verdict"]

THEOREM1 = "Geng et al. 2021, Theorem 1"

_HELP = {
    "holds": (
        "the sufficient condition ‖E‖₂ ≤ σ_min²/σ_max is met: ⟨∇̂, ∇⟩ ≥ 0 for every "
        "cotangent (ascent guaranteed)."
    ),
    "fails": (
        "the sufficient condition is not met: no guarantee either way (ascent may still "
        "hold; look at the measured inner product)."
    ),
    "vacuous": (
        "σ_min(F_θ) ≈ 0 (fewer parameters than state entries, or F_θ rank-deficient): "
        "Theorem 1 says nothing; look at the measured cosine instead."
    ),
}


class Verdict(str, enum.Enum):
    """The outcome of checking Theorem 1: ``"holds"``, ``"fails"`` or ``"vacuous"``.

    A string enum: a verdict equals its value (``verdict == "holds"``), hashes like it
    (it keys dicts of strings) and prints as it.

    Example:
        >>> from gradscope.theory import Verdict
        >>> Verdict("holds") == "holds", str(Verdict.VACUOUS)
        (True, 'vacuous')
        >>> Verdict.FAILS.help.startswith("the sufficient condition is not met")
        True

    """

    HOLDS = "holds"
    """The condition is met, so ascent is guaranteed for every cotangent."""
    FAILS = "fails"
    """The condition is not met; no guarantee either way."""
    VACUOUS = "vacuous"
    """σ_min(F_θ) ≈ 0, so the theorem says nothing."""

    @property
    def help(self) -> str:
        """What the verdict means, in plain words."""
        return _HELP[self.value]

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)
