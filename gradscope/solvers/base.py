r"""What every linear solver shares: the :class:`~gradscope.solvers.Solver` interface and the :class:`~gradscope.solvers.Solution`.

A solver is a frozen dataclass validated on construction. It implements
:meth:`~gradscope.solvers.Solver.iterate`, which works on the rows of a :class:`~gradscope.layout.SampleLayout`
(one per independent sample, or one for the whole state) and returns an
:class:`~gradscope.solvers.Iteration`; :func:`~gradscope.solvers.linear_solve` then certifies the result
with the **true** residual ``‖b − Ax‖ / ‖b‖`` (:ref:`theory-exact-gradient`).

A new solver is a subclass of :class:`~gradscope.solvers.Solver` with ``rtol``, ``atol``, ``max_steps``,
``per_sample`` and ``strict`` fields and an ``iterate`` method; nothing in gradscope
needs editing for :class:`~gradscope.Exact` to accept it.

Example:
    >>> import torch
    >>> from dataclasses import dataclass
    >>> from gradscope.operators import FunctionOperator
    >>> from gradscope.solvers import Iteration, Solver, linear_solve
    >>> @dataclass(frozen=True)
    ... class Jacobi(Solver):  # x ← x + D⁻¹(b − Ax) for A = 2I
    ...     rtol: float | None = None
    ...     atol: float = 0.0
    ...     max_steps: int = 50
    ...     per_sample: bool | None = None
    ...     strict: bool = False
    ...     def iterate(self, A, b, x, layout):
    ...         for step in range(self.max_steps):
    ...             x = x + 0.5 * (b - A(x))
    ...         return Iteration(x, self.max_steps)
    >>> A = FunctionOperator(lambda v: 2 * v, torch.zeros(3, dtype=torch.float64), "2I")
    >>> linear_solve(A, torch.ones(3, dtype=torch.float64), Jacobi()).converged
    True

"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .._checks import check_bool, check_positive, check_steps
from ..status import Status

if TYPE_CHECKING:
    from ..layout import SampleLayout
    from ..operators import LinearOperator

__all__ = ["Iteration", "Solution", "Solver", "default_solver_rtol"]


@dataclass
class Solution:
    """The result of a linear solve.

    Attributes:
        value: the solution x, shaped like b.
        status: how the solve ended (:attr:`~gradscope.Status.SUCCESS` when every sample
            met ``‖b − Ax‖ ≤ max(rtol‖b‖, atol)`` with a finite x).
        residual: the largest true relative residual ``‖b − Ax‖ / ‖b‖`` (absolute where
            ``b = 0``).
        residual_per_sample: the true relative residual per sample (or one value).
        steps: iterations (Arnoldi steps, BiCGSTAB or fixed-point iterations).
        matvecs: products with A, the final residual check included.
        trace: the solver's running residual estimate after each step, shape
            ``(steps, samples)``.
        seconds: wall time of the solve.
        solver: the solver that produced it.

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.operators import FunctionOperator
        >>> M = torch.tensor([[2.0, 1.0], [0.0, 4.0]], dtype=torch.float64)
        >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> sol = gs.solvers.linear_solve(A, torch.tensor([3.0, 4.0], dtype=torch.float64), gs.solvers.Dense())
        >>> sol.converged, sol.value.round(decimals=8).tolist(), sol.residual < 1e-12
        (True, [1.0, 1.0], True)

    """

    value: torch.Tensor
    status: Status
    residual: float
    residual_per_sample: torch.Tensor
    steps: int
    matvecs: int
    trace: torch.Tensor = field(repr=False)
    seconds: float = 0.0
    solver: Solver | None = None

    @property
    def converged(self) -> bool:
        """Whether the true residual certifies the tolerance (``status.ok``)."""
        return self.status.ok

    def __repr__(self) -> str:
        name = type(self.solver).__name__ if self.solver is not None else "?"
        return (
            f"Solution({name}: {self.status.name}, residual={self.residual:.3e}, "
            f"steps={self.steps}, matvecs={self.matvecs}, seconds={self.seconds:.4f})"
        )


@dataclass
class Iteration:
    """What :meth:`~gradscope.solvers.Solver.iterate` returns, before the certificate.

    Attributes:
        value: the iterate x, shaped like b.
        steps: iterations taken.
        trace: running residual estimate per step, ``(steps, rows)``, relative to ‖b‖
            (``None``: no trace).
        residual: ``b − Ax`` of ``value`` if the solver has just computed it (spares
            the certificate one product), else ``None``.
        status: why it stopped short, if it knows (stagnation, breakdown, divergence,
            a singular matrix); ``None`` lets the certificate say
            :attr:`~gradscope.Status.MAX_STEPS` when the tolerance was not met.

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.operators import Identity
        >>> b = torch.ones(2, dtype=torch.float64)
        >>> A = Identity(b)
        >>> it = gs.solvers.GMRES(rtol=1e-12).iterate(A, b, torch.zeros_like(b), A.layout())
        >>> it.value.round(decimals=8).tolist(), it.steps, it.residual is not None
        ([1.0, 1.0], 1, True)

    """

    value: torch.Tensor
    steps: int
    trace: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    status: Status | None = None


class Solver(ABC):
    """A linear solver for ``A x = b`` on tensors: subclass it to add one.

    Subclasses are frozen dataclasses with the fields ``rtol`` (``None``: the dtype's
    :func:`~gradscope.solvers.default_solver_rtol`), ``atol``, ``max_steps``, ``per_sample`` and
    ``strict`` (see :class:`~gradscope.solvers.GMRES`), and implement :meth:`iterate`.

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.operators import FunctionOperator
        >>> class Halve(gs.solvers.FixedPointIteration):  # inherits rtol, atol, ...; solves 2I x = b
        ...     def iterate(self, A, b, x, layout):
        ...         return gs.solvers.Iteration(b / 2, steps=1)
        >>> A = FunctionOperator(lambda v: 2 * v, torch.zeros(2, dtype=torch.float64), "2I")
        >>> sol = gs.solvers.linear_solve(A, torch.ones(2, dtype=torch.float64), Halve())
        >>> sol.converged, sol.value.tolist(), sol.matvecs
        (True, [0.5, 0.5], 1)

    """

    rtol: float | None
    atol: float
    max_steps: int
    per_sample: bool | None
    strict: bool

    def __post_init__(self) -> None:
        call = type(self).__name__
        if self.rtol is not None:
            check_positive(call, "rtol", self.rtol)
        check_positive(call, "atol", self.atol, allow_zero=True)
        check_steps(call, "max_steps", self.max_steps)
        if self.per_sample is not None:
            check_bool(call, "per_sample", self.per_sample)
        check_bool(call, "strict", self.strict)

    @abstractmethod
    def iterate(
        self, A: LinearOperator, b: torch.Tensor, x: torch.Tensor, layout: SampleLayout
    ) -> Iteration:
        """Run the method on ``A x = b`` from ``x`` (``self.rtol`` is set).

        Args:
            A: the operator.
            b: the right-hand side, shaped like A's vectors.
            x: the initial guess.
            layout: the rows to solve independently (one per sample, or one).

        Returns:
            The :class:`~gradscope.solvers.Iteration`.

        """

    def remedy(self, n: int) -> str:
        """What to try when this solver did not converge on systems of size ``n``."""
        return f"Raise max_steps, try GMRES (it converges for any non-singular system), or {CONDITIONING}"

    @property
    def name(self) -> str:
        """The class name, for messages."""
        return type(self).__name__


CONDITIONING = (
    "check the conditioning (gradscope.spectral.smallest_singular_value, spectral_radius)."
)


def default_solver_rtol(dtype: torch.dtype) -> float:
    """The relative residual a solve asks for when ``rtol=None``: what the dtype can reach.

    float64: 1e-8; float32: 1e-5 (near ρ(J) → 1 a float32 product carries ~1e-7 relative
    error, amplified by up to 1/σ_min(I − J)); half precision: 1e-3.

    Example:
        >>> import torch
        >>> from gradscope.solvers import default_solver_rtol
        >>> default_solver_rtol(torch.float32)
        1e-05

    Returns:
        The tolerance.

    """
    if dtype == torch.float64:
        return 1e-8
    if dtype == torch.float32:
        return 1e-5
    return 1e-3
