"""Linear operators on states, and the Jacobians of F at the equilibrium as operators.

* ``gradscope.operators.base``: :class:`~gradscope.operators.LinearOperator` and its algebra (transpose,
  identity, sums, differences, scalar multiples, :func:`~gradscope.operators.damped`), :class:`~gradscope.operators.Counted`;
* ``gradscope.operators.jacobian``: ``v ↦ Jᵀv`` and ``v ↦ Jv`` at h* by automatic
  differentiation, and the parameter products ``F_θᵀ v``, ``F_θ z``.
"""

from .base import Counted, FunctionOperator, Identity, LinearOperator, damped
from .jacobian import (
    JacobianTranspose,
    jacobian_transpose,
    param_jacobian_dense,
    param_jvp,
    param_vjp,
)

__all__ = [
    "Counted",
    "FunctionOperator",
    "Identity",
    "JacobianTranspose",
    "LinearOperator",
    "damped",
    "jacobian_transpose",
    "param_jacobian_dense",
    "param_jvp",
    "param_vjp",
]
