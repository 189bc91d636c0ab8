r"""Theory checks: damping bounds, steps needed, Theorem 1, and the report that joins them.

* ``gradscope.theory.damping``: :func:`~gradscope.theory.damping_limit`, :func:`~gradscope.theory.optimal_damping`,
  :func:`~gradscope.theory.damped_radius`;
* ``gradscope.theory.steps``: :func:`~gradscope.theory.steps_needed`;
* ``gradscope.theory.ascent``: :func:`~gradscope.theory.check_ascent` (Theorem 1) and
  :func:`~gradscope.theory.param_singular_values`, with the outcome a :class:`~gradscope.theory.Verdict`
  (``gradscope.theory.verdict``);
* ``gradscope.theory.report``: :func:`~gradscope.check_theory` and its :class:`~gradscope.theory.TheoryReport`.

The maths is in :ref:`theory-damping`, :ref:`theory-steps` and :ref:`theory-theorem1`.
"""

from .ascent import AscentCheck, check_ascent
from .damping import DampingChoice, DampingLimit, damped_radius, damping_limit, optimal_damping
from .findings import Finding, TheoryReport
from .param_jacobian import param_singular_values
from .report import check_theory
from .singular import Singularity, explain_singularity
from .steps import StepsNeeded, steps_needed
from .verdict import Verdict

__all__ = [
    "AscentCheck",
    "DampingChoice",
    "DampingLimit",
    "Finding",
    "Singularity",
    "StepsNeeded",
    "TheoryReport",
    "Verdict",
    "check_ascent",
    "check_theory",
    "damped_radius",
    "damping_limit",
    "explain_singularity",
    "optimal_damping",
    "param_singular_values",
    "steps_needed",
]
