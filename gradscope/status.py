"""Result codes: how a numerical method ended.

Every solve, series and estimate carries a :class:`~gradscope.Status` in its result
(``Solution.status`` of :class:`~gradscope.solvers.Solution`, ``GradientEstimate.status``
of :class:`~gradscope.estimators.GradientEstimate`, ``BackwardStats.status`` of
:class:`~gradscope.layers.BackwardStats`). Code that needs to
know what happened reads the status; warnings are raised only at the public edge, from
the result (:func:`~gradscope.status.report`), never parsed back.

Example:
    >>> import gradscope as gs
    >>> gs.Status.MAX_STEPS.ok, gs.Status.SUCCESS.ok
    (False, True)
    >>> print(gs.Status.SERIES_GREW.help)  # doctest: +ELLIPSIS
    the terms of the damped series grew...

"""

from __future__ import annotations

import enum
import warnings

from .exceptions import ConvergenceError, ConvergenceWarning

__all__ = ["Status", "report"]


class Status(enum.Enum):
    """How a numerical method ended; ``ok`` only for :attr:`SUCCESS`.

    Example:
        >>> import gradscope as gs
        >>> [status.name for status in gs.Status if status.ok]
        ['SUCCESS']
        >>> gs.Status("max_steps") is gs.Status.MAX_STEPS, gs.Status.MAX_STEPS.ok
        (True, False)

    """

    #: The method met its tolerance (for a solve, its true residual certifies it).
    SUCCESS = "success"
    #: The step budget ran out before the tolerance was met.
    MAX_STEPS = "max_steps"
    #: The iteration stopped improving (restarted GMRES near a singular system).
    STAGNATION = "stagnation"
    #: A Krylov recurrence broke down without reaching the tolerance.
    BREAKDOWN = "breakdown"
    #: The matrix is singular to working precision (a zero pivot in LU).
    SINGULAR = "singular"
    #: The residual grew without bound (fixed-point iteration with ρ(J) ≥ 1).
    DIVERGED = "diverged"
    #: The result holds inf or NaN.
    NON_FINITE = "non_finite"
    #: A truncated Neumann series' last term is larger than its first.
    SERIES_GREW = "series_grew"
    #: The system is singular, and the minimum-norm least-squares solution was returned, as
    #: asked (:class:`~gradscope.solvers.MinimumNorm`).
    LEAST_SQUARES = "least_squares"

    @property
    def ok(self) -> bool:
        """Whether the result can be trusted to the tolerance asked."""
        return self is Status.SUCCESS

    @property
    def help(self) -> str:
        """What the outcome means, in one sentence."""
        return _HELP[self]


_HELP = {
    Status.SUCCESS: "converged: the tolerance was met.",
    Status.MAX_STEPS: "did not converge: the step budget ran out before the tolerance was met.",
    Status.STAGNATION: "did not converge: the iteration stopped improving before the tolerance.",
    Status.BREAKDOWN: "did not converge: the Krylov recurrence broke down.",
    Status.SINGULAR: "did not converge: the matrix is singular to working precision.",
    Status.DIVERGED: "diverged: the residual grew without bound.",
    Status.NON_FINITE: "returned non-finite values (inf or NaN).",
    Status.LEAST_SQUARES: (
        "is singular (no unique exact solution): the minimum-norm least-squares solution "
        "was returned, as asked — a surrogate, not the implicit gradient."
    ),
    Status.SERIES_GREW: (
        "the terms of the damped series grew: ρ(B_λ) ≥ 1 (lower the damping λ) or B_λ is non-normal and "
        "its powers have not decayed yet (raise k)."
    ),
}


def report(message: str, *, strict: bool = False, stacklevel: int = 3) -> None:
    """Warn about a numerical failure (:class:`~gradscope.ConvergenceWarning`), or raise it.

    Args:
        message: the full message, starting ``gradscope.<call>:``.
        strict: raise :class:`~gradscope.ConvergenceError` instead of warning.
        stacklevel: passed to ``warnings.warn``.

    Raises:
        ConvergenceError: when ``strict``.

    """
    if strict:
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
