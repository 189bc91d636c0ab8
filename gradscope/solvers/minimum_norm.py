"""The minimum-norm least-squares solution: an explicit choice for a singular I − Jᵀ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..status import Status
from .base import CONDITIONING, Iteration
from .dense import Dense

if TYPE_CHECKING:
    from ..layout import SampleLayout
    from ..operators import LinearOperator

__all__ = ["MinimumNorm"]


@dataclass(frozen=True)
class MinimumNorm(Dense):
    r"""``x = A⁺ b``: the minimum-norm least-squares solution, by a dense pseudo-inverse.

    When ``I − J`` is singular the exact implicit gradient does not exist
    (:func:`gradscope.theory.explain_singularity` says why). This solver is the explicit
    choice of a surrogate: the adjoint of least norm that minimises ``‖(I − Jᵀ)u − g‖``.
    It is never a default. On a non-singular system it is the exact solution
    (:attr:`~gradscope.Status.SUCCESS`); where a block is singular (a singular value below
    10⁴·eps of the largest) the result is :attr:`~gradscope.Status.LEAST_SQUARES` — the
    solution is then not unique or does not exist — and is reported like any other
    shortfall. Dense: n products per block and an SVD; small states only.

    Its fields are :class:`~gradscope.solvers.Dense`'s.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> from gradscope.solvers import MinimumNorm
        >>> from gradscope.solvers.solve import solve
        >>> M = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)  # singular
        >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> sol = solve(A, torch.tensor([2.0, 1.0], dtype=torch.float64), MinimumNorm())
        >>> sol.status.name, sol.value.tolist()
        ('LEAST_SQUARES', [2.0, 0.0])

    """

    def iterate(
        self, A: LinearOperator, b: torch.Tensor, x: torch.Tensor, layout: SampleLayout
    ) -> Iteration:
        """``pinv(A) b`` per block by an SVD; LEAST_SQUARES where a block is singular."""
        M = A.dense(per_sample=layout.by_sample)
        M = M if layout.by_sample else M.unsqueeze(0)
        rhs = layout.flat(b).unsqueeze(-1)
        U, S, Vh = torch.linalg.svd(M)
        eps = torch.finfo(M.dtype).eps
        cutoff = 1e4 * eps * S[:, :1]  # relative: singular values below it count as zero
        inverse = torch.where(S > cutoff, 1 / S.clamp_min(torch.finfo(M.dtype).tiny), 0.0)
        solution = Vh.transpose(-1, -2) @ (inverse.unsqueeze(-1) * (U.transpose(-1, -2) @ rhs))
        singular = bool((S[:, -1] <= cutoff[:, 0]).any())
        status = Status.LEAST_SQUARES if singular else None
        return Iteration(layout.unflat(solution.squeeze(-1)), 1, status=status)

    def remedy(self, n: int) -> str:
        """What the least-squares result means, and where the cause is explained."""
        return (
            "The minimum-norm least-squares adjoint was returned (no exact solution exists); "
            "gradscope.theory.explain_singularity(problem) says why I − J is singular, or "
            f"{CONDITIONING}"
        )
