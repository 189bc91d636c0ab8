"""Counting products as a wrapper: how many times an operator (or its transpose) was applied."""

from __future__ import annotations

import torch

from .base import LinearOperator

__all__ = ["Counted"]


class Counted(LinearOperator):
    """``A`` that counts its products in ``count`` (a stack of k counts k).

    Its transpose is counted separately (``Counted(A).T.count``): a VJP and a JVP are
    different products.

    Example:
        >>> import torch
        >>> from gradscope.operators import Counted, FunctionOperator
        >>> A = Counted(FunctionOperator(lambda v: 2 * v, torch.zeros(3), "2I"))
        >>> _ = (A.identity() - A)(torch.ones(3))
        >>> A.count
        1

    """

    def __init__(self, operator: LinearOperator) -> None:
        super().__init__(operator.like, operator.name, independent_samples=None)
        self.operator = operator
        self.count = 0

    def _decide_independent(self) -> bool:
        return self.operator.independent_samples

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v``, counted."""
        self.count += 1
        return self.operator.matvec(v)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A V``, counted as ``V.shape[0]`` products."""
        self.count += V.shape[0]
        return self.operator.matmat(V)

    def transpose(self) -> LinearOperator:
        """The counted transpose."""
        return Counted(self.operator.T)
