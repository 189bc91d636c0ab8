r"""Linear operators on states, matrix-free, with the algebra the maths uses.

A :class:`~gradscope.operators.LinearOperator` acts on tensors shaped like its ``like`` tensor (the state).
Operators add, subtract, scale and transpose like matrices, so code reads like the
equations of :ref:`theory-exact-gradient` and :ref:`theory-phantom-gradients`:

* the adjoint system's matrix is ``JT.identity() - JT``, i.e. ``I − Jᵀ``;
* the damped map ``B_λ = (1 − λ)I + λJ`` is :func:`~gradscope.operators.damped` ``(J, λ)``, and
  ``damped(JT, λ)`` is ``B_λᵀ``.

Whether the samples of a batched state are independent (the matrix is block-diagonal
over dimension 0) is a structural property of each operator,
:attr:`~gradscope.operators.LinearOperator.independent_samples`: sums and multiples inherit it, solvers and
spectral methods read it. No d×d matrix is formed, except by :meth:`~gradscope.operators.LinearOperator.dense`
on request (the reference path for small d).

Example:
    >>> import torch
    >>> from gradscope.operators import FunctionOperator, damped
    >>> M = torch.tensor([[0.5, 0.2], [0.0, 0.3]], dtype=torch.float64)
    >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M",
    ...                      transpose=lambda: FunctionOperator(lambda v: M.T @ v,
    ...                                                         torch.zeros(2, dtype=torch.float64), "Mᵀ"))
    >>> torch.allclose((A.identity() - A).dense(), torch.eye(2, dtype=torch.float64) - M)
    True
    >>> torch.allclose(damped(A, 0.5).T.dense(), 0.5 * torch.eye(2, dtype=torch.float64) + 0.5 * M.T)
    True

"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from .._checks import check_damping, check_floating, check_tensor, fail
from ..layout import SampleLayout

__all__ = ["Identity", "LinearOperator", "damped"]


class LinearOperator(ABC):
    """A linear map ``v ↦ A v`` on tensors shaped like ``like``, applied matrix-free.

    Subclasses implement :meth:`matvec` and, where known, :meth:`transpose`; they may
    override :meth:`matmat` with a batched product.

    Args:
        like: a tensor with the shape, dtype and device of the vectors.
        name: what the map is, for messages (``"Jᵀ"``, ``"I − Jᵀ"``, ...).
        independent_samples: the map is block-diagonal over dimension 0 of a batched
            state (each sample's output depends on that sample alone).

    Example:
        >>> import torch
        >>> from gradscope.operators import LinearOperator
        >>> class Triple(LinearOperator):
        ...     def matvec(self, v):
        ...         return 3.0 * v
        >>> A = Triple(torch.zeros(2, dtype=torch.float64), "3I")
        >>> (A - A.identity()).dense().tolist()
        [[2.0, 0.0], [0.0, 2.0]]

    """

    def __init__(
        self, like: torch.Tensor, name: str, *, independent_samples: bool | None = False
    ) -> None:
        call = type(self).__name__
        like = check_tensor(call, "like", like)
        check_floating(call, "like", like)
        self.like = like.detach()
        self.name = name
        self._independent = independent_samples
        self._transposed: LinearOperator | None = None

    @property
    def independent_samples(self) -> bool:
        """Whether the map is block-diagonal over dimension 0 (decided once, on first use)."""
        if self._independent is None:
            self._independent = bool(self._decide_independent())
        return self._independent

    def _decide_independent(self) -> bool:
        """Decide :attr:`independent_samples` when it was not given (``None``)."""
        return False

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``v`` shaped like the state (no shape check)."""

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A V[i]`` for each ``V[i]`` of a stack ``V`` of shape ``(k, *shape)``."""
        return torch.stack([self.matvec(v) for v in V])

    def transpose(self) -> LinearOperator:
        """The transposed map; subclasses that know it override this."""
        fail(
            f"{type(self).__name__}({self.name}).T",
            "this map has no known transpose.",
            NotImplementedError,
        )

    # ------------------------------------------------------------------ use
    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``v`` (shape checked)."""
        if v.shape != self.like.shape:
            fail(
                f"LinearOperator({self.name})",
                f"vector of shape {tuple(v.shape)}; expected {tuple(self.like.shape)}.",
            )
        return self.matvec(v)

    @property
    def T(self) -> LinearOperator:
        """The transposed map (built once, so that a :class:`~gradscope.operators.Counted` keeps its count)."""
        if self._transposed is None:
            self._transposed = self.transpose()
        return self._transposed

    @property
    def shape(self) -> torch.Size:
        """Shape of the vectors the map acts on."""
        return self.like.shape

    @property
    def size(self) -> int:
        """Number of entries of a vector, the matrix's order."""
        return self.like.numel()

    def layout(self, per_sample: bool | None = None) -> SampleLayout:
        """The rows a solver works on: one per sample when they are independent.

        Args:
            per_sample: force per-sample rows (only valid for independent samples) or
                one row; ``None`` follows :attr:`independent_samples`.

        Returns:
            The :class:`~gradscope.layout.SampleLayout`.

        """
        rows = self.independent_samples if per_sample is None else per_sample
        return SampleLayout(self.like.shape, bool(rows))

    def identity(self) -> Identity:
        """The identity on the same vectors."""
        return Identity(self.like)

    # ------------------------------------------------------------------ algebra
    def __add__(self, other: object) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return LinearCombination(((1.0, self), (1.0, other)))

    def __sub__(self, other: object) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return LinearCombination(((1.0, self), (-1.0, other)))

    def __neg__(self) -> LinearOperator:
        return LinearCombination(((-1.0, self),))

    def __mul__(self, scalar: object) -> LinearOperator:
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
            return NotImplemented
        return LinearCombination(((float(scalar), self),))

    __rmul__ = __mul__

    # ------------------------------------------------------------------ export
    def dense(self, per_sample: bool = False, chunk: int = 256) -> torch.Tensor:
        """Materialise the matrix (small problems only).

        Args:
            per_sample: return the diagonal blocks ``(samples, n, n)`` of a map whose
                samples are independent, using n products instead of samples × n.
            chunk: number of basis vectors pushed through at once.

        Returns:
            ``(N, N)`` with ``N = like.numel()`` (column j is ``A e_j`` flattened), or the
            ``(samples, n, n)`` blocks.

        """
        like = self.like
        if per_sample and like.dim() >= 2:
            samples, n = like.shape[0], like[0].numel()
            eye = torch.eye(n, dtype=like.dtype, device=like.device)
            columns = []
            for start in range(0, n, chunk):
                block = eye[start : start + chunk]  # basis vectors e_j, j in chunk
                V = block[:, None, :].expand(-1, samples, -1).reshape((-1, *like.shape))
                columns.append(self.matmat(V.contiguous()).reshape(block.shape[0], samples, n))
            return torch.cat(columns).permute(1, 2, 0)  # (samples, n rows, n columns)
        N = like.numel()
        eye = torch.eye(N, dtype=like.dtype, device=like.device)
        columns = [
            self.matmat(eye[s : s + chunk].reshape((-1, *like.shape))).reshape(-1, N)
            for s in range(0, N, chunk)
        ]
        return torch.cat(columns).T

    def to_scipy(self) -> Any:
        """This map as a :class:`scipy.sparse.linalg.LinearOperator` on flat float64 vectors.

        ``rmatvec`` is provided where the transpose is known. Each product copies the
        vector between numpy and the tensor's device: a reference path, not a fast one.

        Returns:
            The scipy operator.

        """
        from scipy.sparse.linalg import LinearOperator as ScipyOperator

        like = self.like

        def to_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x).reshape(like.shape)).to(like)

        def matvec(x: np.ndarray) -> np.ndarray:
            return self(to_tensor(x)).detach().cpu().double().numpy().reshape(-1)

        try:
            transposed: LinearOperator | None = self.T
        except NotImplementedError:
            transposed = None

        def rmatvec(x: np.ndarray) -> np.ndarray:
            assert transposed is not None
            return transposed(to_tensor(x)).detach().cpu().double().numpy().reshape(-1)

        N = like.numel()
        return ScipyOperator(
            (N, N), matvec=matvec, rmatvec=rmatvec if transposed else None, dtype=np.float64
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name}, shape={tuple(self.like.shape)}, "
            f"dtype={self.like.dtype})"
        )


class Identity(LinearOperator):
    """The identity ``v ↦ v``; its samples are independent.

    Example:
        >>> import torch
        >>> from gradscope.operators import Identity
        >>> v = torch.arange(6, dtype=torch.float64).reshape(2, 3)
        >>> I = Identity(v)
        >>> torch.equal(I(v), v), I.T is I, I.independent_samples
        (True, True, True)

    """

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__(like, "I", independent_samples=True)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``v``."""
        return v

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``V``."""
        return V

    def transpose(self) -> LinearOperator:
        """The identity."""
        return self


class LinearCombination(LinearOperator):
    terms: tuple[tuple[float, LinearOperator], ...]
    _named: str | None

    """``Σ cᵢ Aᵢ``: what ``+``, ``−`` and scalar ``*`` of operators build.

    Each product applies every term once (the identity costs nothing); the samples are
    independent when they are for every term.
    """

    def __init__(
        self, terms: tuple[tuple[float, LinearOperator], ...], name: str | None = None
    ) -> None:
        flat: list[tuple[float, LinearOperator]] = []
        for c, op in terms:
            if isinstance(op, LinearCombination) and name is None and op._named is None:
                flat.extend((c * c2, op2) for c2, op2 in op.terms)
            else:
                flat.append((c, op))
        first = flat[0][1]
        for _, op in flat[1:]:
            if op.like.shape != first.like.shape:
                fail(
                    "LinearOperator",
                    f"cannot combine {first.name} on shape {tuple(first.like.shape)} with "
                    f"{op.name} on shape {tuple(op.like.shape)}; expected one shape.",
                )
        self.terms = tuple(flat)
        self._named = name
        super().__init__(
            first.like, name or _combination_name(self.terms), independent_samples=None
        )

    def _decide_independent(self) -> bool:
        return all(op.independent_samples for _, op in self.terms)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``Σ cᵢ Aᵢ v``."""
        return _combine([(c, op.matvec(v)) for c, op in self.terms])

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``Σ cᵢ Aᵢ V``."""
        return _combine([(c, op.matmat(V)) for c, op in self.terms])

    def transpose(self) -> LinearOperator:
        """``Σ cᵢ Aᵢᵀ``."""
        name = None if self._named is None else f"({self._named})ᵀ"
        return LinearCombination(tuple((c, op.T) for c, op in self.terms), name)


def _combine(scaled: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    total: torch.Tensor | None = None
    for c, x in scaled:
        if c == 0.0:
            continue
        term = x if c == 1.0 else (-x if c == -1.0 else c * x)
        total = term if total is None else total + term
    return scaled[0][1] * 0 if total is None else total


def _combination_name(terms: tuple[tuple[float, LinearOperator], ...]) -> str:
    parts = []
    for i, (c, op) in enumerate(terms):
        sign = "−" if c < 0 else "+"
        magnitude = abs(c)
        coefficient = "" if magnitude == 1.0 else f"{magnitude:g}·"
        text = f"{coefficient}{op.name}"
        parts.append(("−" + text if sign == "−" else text) if i == 0 else f" {sign} {text}")
    return "".join(parts)


def damped(operator: LinearOperator, damping: float) -> LinearOperator:
    r"""The damped map ``B_λ = (1 − λ)I + λA`` (``A`` itself when λ = 1).

    With ``A = J`` this is the iteration matrix of the damped step
    ``h ← (1 − λ)h + λF(h)`` (:ref:`theory-phantom-gradients`); ``damped(Jᵀ, λ) = B_λᵀ``.

    Args:
        operator: A.
        damping: λ in (0, 1].

    Returns:
        The operator ``(1 − λ)I + λA``.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator, damped
        >>> A = FunctionOperator(lambda v: -v, torch.zeros(2), "−I")
        >>> damped(A, 0.25)(torch.ones(2))
        tensor([0.5000, 0.5000])

    """
    if not isinstance(operator, LinearOperator):
        fail(
            "damped",
            f"operator is a {type(operator).__name__}; expected a "
            "gradscope.operators.LinearOperator (e.g. jacobian_transpose(problem)).",
            TypeError,
        )
    check_damping("damped", damping)
    lam = float(damping)
    if lam == 1.0:
        return operator
    return LinearCombination(
        ((1 - lam, operator.identity()), (lam, operator)), f"B_{lam:g}[{operator.name}]"
    )
