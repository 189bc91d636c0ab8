r"""The estimator interface: every gradient estimator turns the cotangent into an adjoint.

The exact implicit gradient and every phantom gradient share one shape
(:ref:`theory-exact-gradient`, :ref:`theory-phantom-gradients`): from the cotangent
``g = ∂ℓ/∂h*`` the estimator makes an adjoint vector ``u``, and the gradients are

    ∇_θ ℓ ≈ F_θᵀ u,    ∇_x ℓ ≈ F_xᵀ u.

:class:`~gradscope.Estimator` captures that: a subclass implements :meth:`~gradscope.Estimator.adjoint`,
given the operator ``JT: v ↦ Jᵀv`` at h* (with ``.T``, ``+``, ``−``, scalar ``*`` and
``JT.identity()``), and the shared step ``F_θᵀu`` is taken once, by
:meth:`~gradscope.Estimator.gradient`. An estimator that differentiates something other than the
frozen Jacobian (:class:`~gradscope.Unrolled`) overrides :meth:`~gradscope.Estimator.gradient`.

Example — a user-written estimator, the two-term Neumann series ``u = g + Jᵀg``:

    >>> import torch, gradscope as gs
    >>> class TwoTerms(gs.Estimator):
    ...     def adjoint(self, JT, g):
    ...         return g + JT(g)
    >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
    >>> problem = gs.FixedPointProblem.from_function(
    ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
    >>> g = torch.ones(2, dtype=torch.float64)
    >>> mine = gs.estimate_gradient(problem, g, TwoTerms())
    >>> npg = gs.estimate_gradient(problem, g, gs.Neumann(steps=2, damping=1.0))
    >>> torch.equal(mine.grads["W"], npg.grads["W"]), mine.cost.vjps
    (True, 2)

"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .._checks import all_finite, fail
from ..operators import Counted, jacobian_transpose
from ..operators.jacobian import param_vjp_and_unreached
from ..solvers.solve import describe_failure
from ..status import Status

if TYPE_CHECKING:
    from ..operators import LinearOperator
    from ..problem import FixedPointProblem, Params
    from ..solvers import Solution

__all__ = ["Adjoint", "Estimator", "Gradient", "check_estimator"]


@dataclass
class Adjoint:
    """An adjoint vector with how it was obtained.

    Attributes:
        value: u, shaped like the state.
        status: :attr:`~gradscope.Status.SUCCESS`, or what went wrong (a failed solve, a
            growing or non-finite series).
        solution: the linear solve behind it (:class:`~gradscope.Exact`).
        series_ratio: a truncated series' last term relative to its first,
            ``‖(B_λᵀ)^{k−1} g‖ / ‖g‖`` (> 1: the series grew).

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.estimators import Adjoint
        >>> u = Adjoint(torch.ones(2, dtype=torch.float64), gs.Status.SERIES_GREW, series_ratio=1.5)
        >>> u.status.ok, u.solution is None, u.value.tolist()
        (False, True, [1.0, 1.0])

    """

    value: torch.Tensor
    status: Status = Status.SUCCESS
    solution: Solution | None = None
    series_ratio: float | None = None


@dataclass
class Gradient:
    """What :meth:`~gradscope.Estimator.gradient` returns: the gradients and what they cost.

    ``unreached`` names the parameters that F's graph does not reach (their gradients
    are zeros); an estimator that overrides :meth:`~gradscope.Estimator.gradient` fills
    it from the ``None`` results of ``torch.autograd.grad(..., allow_unused=True)``.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, 0 * W[0])
        >>> gradient = gs.Neumann(steps=3, damping=1.0).gradient(problem, torch.ones(2, dtype=torch.float64))
        >>> list(gradient.grads), gradient.vjps, gradient.status.ok
        (['W'], 3, True)

    """

    grads: Params
    input_grads: tuple[torch.Tensor | None, ...]
    adjoint: Adjoint | None
    vjps: int
    graph_bytes: int
    status: Status
    series_ratio: float | None = None
    unreached: tuple[str, ...] = ()


class Estimator(ABC):
    """A gradient estimator: ``g ↦ u``, then ``∇_θ = F_θᵀu`` (see the module notes).

    Subclass it and implement :meth:`adjoint`; the result works everywhere an estimator
    is accepted (:func:`~gradscope.estimate_gradient`, :func:`~gradscope.compare`,
    :class:`~gradscope.ImplicitLayer`, :class:`~gradscope.GradientMonitor`, sweeps).

    Example:
        >>> import torch, gradscope as gs
        >>> class Plain(gs.Estimator):  # u = g: the Jacobian-free gradient
        ...     def adjoint(self, JT, g):
        ...         return g
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, 0 * W[0])
        >>> estimate = gs.estimate_gradient(problem, torch.ones(2, dtype=torch.float64), Plain())
        >>> estimate.name, estimate.cost.vjps, estimate.status.ok
        ('Plain', 1, True)

    """

    @property
    def name(self) -> str:
        """Short label for tables (the class name unless overridden)."""
        return type(self).__name__

    @property
    def strict(self) -> bool:
        """Whether a failure of this estimator should raise instead of warn (default no)."""
        return False

    @abstractmethod
    def adjoint(self, JT: LinearOperator, g: torch.Tensor) -> torch.Tensor | Adjoint:
        """The adjoint u for the cotangent g.

        Args:
            JT: ``v ↦ Jᵀv`` at h* (``JT.T`` is ``v ↦ Jv``; ``JT.identity()`` is I).
            g: the cotangent ``∂ℓ/∂h*``.

        Returns:
            u, as a tensor shaped like g, or an :class:`~gradscope.estimators.Adjoint` with its status.

        """

    def gradient(self, problem: FixedPointProblem, g: torch.Tensor) -> Gradient:
        """``F_θᵀu`` and ``F_xᵀu`` for ``u = adjoint(Jᵀ, g)``: the step every estimator shares.

        Args:
            problem: the equilibrium.
            g: the cotangent (checked by the caller).

        Returns:
            The :class:`~gradscope.estimators.Gradient`.

        """
        graph_bytes = problem.linearization.graph_bytes  # built here if not yet
        JT = Counted(jacobian_transpose(problem))
        adjoint = as_adjoint(self.adjoint(JT, g), self.name, g)
        grads, input_grads, unreached = param_vjp_and_unreached(problem, adjoint.value)
        status = adjoint.status
        if status.ok and not all_finite(
            *grads.values(), *(x for x in input_grads if x is not None)
        ):
            status = Status.NON_FINITE
        return Gradient(
            grads,
            input_grads,
            adjoint,
            JT.count + 1,
            graph_bytes,
            status,
            adjoint.series_ratio,
            unreached,
        )


def as_adjoint(result: object, name: str, g: torch.Tensor) -> Adjoint:
    """Check what :meth:`~gradscope.Estimator.adjoint` returned and wrap it as an :class:`~gradscope.estimators.Adjoint`."""
    adjoint = result if isinstance(result, Adjoint) else None
    value = adjoint.value if adjoint is not None else result
    if not isinstance(value, torch.Tensor) or value.shape != g.shape:
        what = (
            f"shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        fail(
            f"{name}.adjoint",
            f"returned {what}; expected a tensor shaped like the cotangent, {tuple(g.shape)} "
            "(or a gradscope.estimators.Adjoint holding one).",
            TypeError,
        )
    if adjoint is None:
        adjoint = Adjoint(value)
    if adjoint.status.ok and not all_finite(adjoint.value):
        adjoint.status = Status.NON_FINITE
    return adjoint


def check_estimator(call: str, estimator: object, name: str = "estimator") -> Estimator:
    """Raise a TypeError naming ``call`` unless ``estimator`` is an :class:`~gradscope.Estimator`."""
    if not isinstance(estimator, Estimator):
        what = f"{name}={estimator!r}" if name == "estimator" else f"{name} contains {estimator!r}"
        fail(
            call,
            f"{what}; expected gradscope.Exact(), Unrolled(k, λ), Neumann(k, λ), OneStep() "
            "or another gradscope.Estimator.",
            TypeError,
        )
    return estimator


def failure_message(name: str, adjoint: Adjoint, call: str) -> str:
    """The warning text for an adjoint whose status is not ok."""
    if adjoint.solution is not None:
        return describe_failure(adjoint.solution, "I − Jᵀ", call) + (
            " If the residual will not fall, I − J may be singular (an eigenvalue of J at 1): "
            "gradscope.theory.explain_singularity(problem) finds it and says why."
        )
    ratio = adjoint.series_ratio
    if adjoint.status is Status.SERIES_GREW and ratio is not None:
        return (
            f"gradscope.{call}: {name}: the terms of the damped series grew, the last one is "
            f"{ratio:.3g}× ‖g‖ (Neumann: (B_λᵀ)^(k−1) g; Unrolled: the cotangent carried back "
            "to h₀). Either ρ(B_λ) ≥ 1 and the series diverges (lower λ), or B_λ is "
            "non-normal and its powers have not decayed yet (raise k). "
            "gradscope.check_theory tells which."
        )
    return (
        f"gradscope.{call}: {name} {adjoint.status.help} The gradient is unreliable: lower the "
        "damping λ (gradscope.theory.damping_limit gives the admissible range) or use Exact()."
    )
