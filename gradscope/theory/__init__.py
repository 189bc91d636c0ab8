r"""Theory checks: damping bounds, steps needed, Theorem 1, and the report that joins them.

* ``gradscope.theory.damping``: :func:`damping_limit`, :func:`optimal_damping`,
  :func:`damped_radius`;
* ``gradscope.theory.steps``: :func:`steps_needed`;
* ``gradscope.theory.ascent``: :func:`check_ascent` (Theorem 1) and
  :func:`param_singular_values`, with the outcome a :class:`Verdict`
  (``gradscope.theory.verdict``);
* ``gradscope.theory.report``: :func:`~gradscope.check_theory` and its :class:`TheoryReport`.

The maths is in :ref:`theory-damping`, :ref:`theory-steps` and :ref:`theory-theorem1`.
"""

from .ascent import AscentCheck, check_ascent, param_singular_values
from .damping import DampingChoice, DampingLimit, damped_radius, damping_limit, optimal_damping
from .report import Finding, TheoryReport, check_theory
from .steps import StepsNeeded, steps_needed
from .verdict import Verdict

__all__ = [
    "AscentCheck",
    "DampingChoice",
    "DampingLimit",
    "Finding",
    "StepsNeeded",
    "TheoryReport",
    "Verdict",
    "check_ascent",
    "check_theory",
    "damped_radius",
    "damping_limit",
    "optimal_damping",
    "param_singular_values",
    "steps_needed",
]
