"""An operator from a function ``v ↦ A v``: the way to wrap a matrix-free product."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._checks import fail
from .base import LinearOperator

__all__ = ["FunctionOperator", "Matvec"]

Matvec = Callable[[torch.Tensor], torch.Tensor]


class FunctionOperator(LinearOperator):
    """A :class:`~gradscope.operators.LinearOperator` from a function ``v ↦ A v``.

    Args:
        matvec: ``v ↦ A v`` on tensors shaped like ``like``.
        like: a tensor with the shape, dtype and device of the vectors.
        name: what the map is, for messages.
        matmat: optional ``V ↦ A V`` on a stack of shape ``(k, *like.shape)``.
        transpose: the transposed map, or a function that builds it (for maps that are
            each other's transposes).
        independent_samples: see :class:`~gradscope.operators.LinearOperator`.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> A = FunctionOperator(lambda v: 2 * v, torch.zeros(3), "2I")
        >>> A(torch.ones(3))
        tensor([2., 2., 2.])

    """

    def __init__(
        self,
        matvec: Matvec,
        like: torch.Tensor,
        name: str = "A",
        *,
        matmat: Matvec | None = None,
        transpose: LinearOperator | Callable[[], LinearOperator] | None = None,
        independent_samples: bool | None = False,
    ) -> None:
        super().__init__(like, name, independent_samples=independent_samples)
        if not callable(matvec):
            fail(
                "FunctionOperator",
                f"matvec is a {type(matvec).__name__}; expected a callable.",
                TypeError,
            )
        self._matvec = matvec
        self._matmat = matmat
        self._transpose = transpose

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v``."""
        return self._matvec(v)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A V[i]`` for each ``i`` (the batched function if given)."""
        if self._matmat is not None:
            return self._matmat(V)
        return super().matmat(V)

    def transpose(self) -> LinearOperator:
        """The transposed map given at construction."""
        t = self._transpose
        if t is None:
            return super().transpose()
        return t if isinstance(t, LinearOperator) else t()
