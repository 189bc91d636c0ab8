"""Forward solvers: find ``h* = F(h*, x)`` by damped fixed-point iteration or Anderson.

gradscope is not a DEQ framework, but its tests, demos and analysis need a solid forward
solver. Both methods are batched: with ``per_sample=True`` (the default) each sample of
a batched state keeps its own Anderson mixing weights, as in Bai et al.'s DEQ code;
every sample's convergence is judged on its own relative residual
``‖F(h) − h‖ / ‖F(h)‖``. Whatever the method, the returned value is the iterate with the
smallest residual seen, and that residual is the true one.

The package: ``gradscope.fixed_point.methods`` (:class:`Anderson`, :class:`Picard`,
:class:`FixedPointResult`), ``gradscope.fixed_point.iterations`` (the two iterations) and
``gradscope.fixed_point.solve`` (:func:`~gradscope.find_fixed_point`, the initial state).
"""

from .methods import Anderson, FixedPointResult, Picard
from .solve import find_fixed_point

__all__ = ["Anderson", "FixedPointResult", "Picard", "find_fixed_point"]
