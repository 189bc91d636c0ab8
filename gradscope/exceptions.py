"""Warnings and errors that gradscope raises.

Three kinds of trouble get three answers (see the design notes):

* a programming error raises :class:`ValueError` or :class:`TypeError` at the call,
  with a message that names the call, what it got, what it expected and the fix;
* a numerical failure (a solve that did not converge, a series that grew) is
  recorded in the result and warned with :class:`~gradscope.ConvergenceWarning`, or raised
  as :class:`~gradscope.ConvergenceError` when the caller asked for ``strict=True``;
* a theory condition that fails is a *finding*: it is reported, never raised.
"""

from __future__ import annotations

__all__ = [
    "CapturedTensorWarning",
    "ConvergenceError",
    "ConvergenceWarning",
    "FixedPointWarning",
    "UnreachedParameterWarning",
]


class ConvergenceWarning(UserWarning):
    """A numerical method stopped without meeting its tolerance, or produced non-finite values."""


class FixedPointWarning(UserWarning):
    """The state handed to gradscope as ``h*`` is not a fixed point to the tolerance asked."""


class ConvergenceError(RuntimeError):
    """Raised instead of :class:`~gradscope.ConvergenceWarning` when ``strict=True``."""


class UnreachedParameterWarning(UserWarning):
    """A parameter to be differentiated is not reached by F: its gradient is reported as zeros.

    A parameter that F does not use has no path in autograd; gradscope lists it on the
    estimate (``GradientEstimate.unreached``) and warns once per call, so a zero is never
    mistaken for an estimate (TorchDEQ's cached normed weights were one such case).
    """


class CapturedTensorWarning(UserWarning):
    """F uses tensors that require grad but are not among the problem's parameters.

    A closure that captures a module's parameters (``lambda p, h: cell(h, x)``) hides them
    from gradscope: their gradients are not estimated and :func:`~gradscope.compare` does not
    see them. Pass them in ``params`` or build the problem with ``from_module``.
    """
