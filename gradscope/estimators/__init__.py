r"""Gradient estimators: the exact implicit gradient and the phantom gradients.

* ``gradscope.estimators.base``: the :class:`~gradscope.Estimator` interface (``g ↦ u``, then
  the shared ``F_θᵀu``);
* ``gradscope.estimators.exact``: :class:`~gradscope.Exact` (solve ``(I − Jᵀ)u = g``);
* ``gradscope.estimators.neumann``: :class:`~gradscope.Neumann` (NPG) and :class:`~gradscope.OneStep`;
* ``gradscope.estimators.unrolled``: :class:`~gradscope.Unrolled` (UPG);
* ``gradscope.estimators.estimate``: :func:`~gradscope.estimate_gradient`, its
  :class:`~gradscope.estimators.GradientEstimate` and :class:`~gradscope.estimators.Cost`, and :func:`~gradscope.estimators.user_gradient`.
"""

from .base import Adjoint, Estimator, Gradient, check_estimator
from .estimate import Cost, GradientEstimate, estimate_gradient, user_gradient
from .exact import Exact
from .neumann import DampedSteps, Neumann, OneStep
from .unrolled import Unrolled

__all__ = [
    "Adjoint",
    "Cost",
    "DampedSteps",
    "Estimator",
    "Exact",
    "Gradient",
    "GradientEstimate",
    "Neumann",
    "OneStep",
    "Unrolled",
    "check_estimator",
    "estimate_gradient",
    "user_gradient",
]
