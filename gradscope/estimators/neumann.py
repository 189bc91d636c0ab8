r"""The Neumann-series phantom gradient (NPG) and its one-step special case."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .._checks import all_finite, check_damping, check_steps
from ..operators import damped
from ..status import Status
from .base import Adjoint, Estimator

if TYPE_CHECKING:
    from ..operators import LinearOperator

__all__ = ["DampedSteps", "Neumann", "OneStep", "neumann_adjoint"]


@dataclass(frozen=True)
class DampedSteps(Estimator):
    """What NPG and UPG share: k ≥ 1 steps of the damped map with damping λ in (0, 1].

    The fields are validated on construction; the name reads ``Class(k, λ)``. Subclass it
    (and implement :meth:`~gradscope.Estimator.adjoint`) for an estimator that
    :func:`gradscope.sweeps.sweep` can run over a (k, λ) grid.

    Example:
        >>> import torch, gradscope as gs
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Powers(gs.estimators.DampedSteps):  # u = λ (B_λᵀ)^(k−1) g: the last term only
        ...     def adjoint(self, JT, g):
        ...         B = gs.operators.damped(JT, self.damping)
        ...         for _ in range(self.steps - 1):
        ...             g = B(g)
        ...         return self.damping * g
        >>> Powers(3, 0.5).name
        'Powers(3, 0.5)'

    """

    steps: int = 5
    damping: float = 0.5

    def __post_init__(self) -> None:
        check_steps(type(self).__name__, "steps", self.steps)
        check_damping(type(self).__name__, self.damping)

    @property
    def name(self) -> str:
        """Short label for tables."""
        return f"{type(self).__name__}({self.steps}, {self.damping:g})"


@dataclass(frozen=True)
class Neumann(DampedSteps):
    r"""The Neumann-series phantom gradient NPG (Geng et al. 2021, equation 10).

    ``v ← g``, then k − 1 times ``v ← g + B_λᵀ v``, then ``u = λv`` — that is
    ``u = λ Σ_{t<k} (B_λᵀ)^t g`` with ``B_λ = (1 − λ)I + λJ`` at h*, and ``∇̂ = F_θᵀu``.
    k VJPs, one graph of F. Its adjoint error is ``u* − u_k = (B_λᵀ)^k u*``
    (:ref:`theory-neumann-error`, derived). A series whose last term outgrows the
    first is reported (:attr:`~gradscope.Status.SERIES_GREW`).

    Args:
        steps: k ≥ 1.
        damping: λ in (0, 1].

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> g = torch.ones(2, dtype=torch.float64)
        >>> est = gs.estimate_gradient(problem, g, gs.Neumann(steps=2, damping=1.0))
        >>> torch.allclose(est.adjoint, g + W.T @ g)
        True

    """

    def adjoint(self, JT: LinearOperator, g: torch.Tensor) -> Adjoint:
        """``λ Σ_{t<k} (B_λᵀ)^t g``, with the growth of its terms."""
        return neumann_adjoint(JT, g, self.steps, float(self.damping))


def neumann_adjoint(JT: LinearOperator, g: torch.Tensor, k: int, lam: float) -> Adjoint:
    """``u = λ Σ_{t<k} (B_λᵀ)^t g`` (k − 1 products), with its status and series ratio."""
    BT = damped(JT, lam)
    v, term = g, g
    for _ in range(k - 1):  # term_t = (B_λᵀ)^t g; v = Σ_{s≤t} term_s
        term = BT(term)
        v = v + term
    u = lam * v if lam != 1.0 else v
    g_norm = float(torch.linalg.vector_norm(g))
    ratio = float(torch.linalg.vector_norm(term)) / g_norm if g_norm > 0 else 0.0
    if not all_finite(u):
        status = Status.NON_FINITE
    elif k > 1 and ratio > 1.0:
        status = Status.SERIES_GREW
    else:
        status = Status.SUCCESS
    return Adjoint(u, status, series_ratio=ratio)


@dataclass(frozen=True)
class OneStep(Estimator):
    """The one-step (Jacobian-free) gradient ``F_θᵀ g``: ``u = g``.

    The k = 1, λ = 1 case of both phantom gradients (:ref:`theory-phantom-gradients`);
    Fung et al.'s JFB (AAAI 2022). No product with J.

    Example:
        >>> import torch, gradscope as gs
        >>> b = torch.tensor([0.5, 0.6], dtype=torch.float64)
        >>> W = torch.tensor([[0.5, 0.0], [0.0, 0.4]], dtype=torch.float64)
        >>> problem = gs.FixedPointProblem.from_function(  # h* = (1, 1)
        ...     lambda p, h: p["W"] @ h + b, {"W": W}, torch.ones(2, dtype=torch.float64))
        >>> g = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> gs.estimate_gradient(problem, g, gs.OneStep()).grads["W"].tolist()  # g hᵀ
        [[1.0, 1.0], [2.0, 2.0]]

    """

    @property
    def name(self) -> str:
        """Short label for tables."""
        return "OneStep"

    def adjoint(self, JT: LinearOperator, g: torch.Tensor) -> torch.Tensor:
        """``u = g``."""
        return g
