"""Linear operators on states, and the Jacobians of F at the equilibrium as operators.

* ``gradscope.operators.base``: :class:`~gradscope.operators.LinearOperator` and its algebra
  (transpose, identity, sums, differences, scalar multiples,
  :func:`~gradscope.operators.damped`);
* ``gradscope.operators.function``: :class:`~gradscope.operators.FunctionOperator`, an
  operator from a function;
* ``gradscope.operators.counted``: :class:`~gradscope.operators.Counted`, product counting
  as a wrapper;
* ``gradscope.operators.jacobian``: ``v ↦ Jᵀv`` and ``v ↦ Jv`` at h* by automatic
  differentiation, and the parameter products ``F_θᵀ v``, ``F_θ z``.
"""

from .base import Identity, LinearOperator, damped
from .counted import Counted
from .function import FunctionOperator
from .jacobian import (
    JacobianTranspose,
    jacobian_transpose,
    param_jacobian_dense,
    param_jvp,
    param_vjp,
    param_vjp_and_unreached,
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
    "param_vjp_and_unreached",
]
