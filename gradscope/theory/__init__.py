r"""Theory checks: damping bounds, steps needed, Theorem 1, and the report that joins them.

* :mod:`~gradscope.theory.core`: :func:`damping_limit`, :func:`optimal_damping`,
  :func:`steps_needed`, :func:`check_ascent`, :func:`param_singular_values`;
* :mod:`~gradscope.theory.report`: :func:`check_theory` and its :class:`TheoryReport`.

The maths is in :ref:`theory-damping`, :ref:`theory-steps` and :ref:`theory-theorem1`.
"""

from .core import (
    AscentCheck,
    DampingChoice,
    DampingLimit,
    StepsNeeded,
    check_ascent,
    damped_radius,
    damping_limit,
    optimal_damping,
    param_singular_values,
    steps_needed,
)
from .report import Finding, TheoryReport, check_theory

__all__ = [
    "AscentCheck",
    "DampingChoice",
    "DampingLimit",
    "Finding",
    "StepsNeeded",
    "TheoryReport",
    "check_ascent",
    "check_theory",
    "damped_radius",
    "damping_limit",
    "optimal_damping",
    "param_singular_values",
    "steps_needed",
]
