r"""Matrix-free operators at the equilibrium: J, Jᵀ, I − Jᵀ, B_λ and F_θᵀ, F_xᵀ.

With ``J = ∂F/∂h`` at h* (:ref:`theory-setting`), everything gradscope computes is built from

* ``Jᵀv`` and ``F_θᵀ v``, ``F_xᵀ v``: vector–Jacobian products that walk the one autograd
  graph of F at h* again (:attr:`FixedPointProblem.linearization <gradscope.FixedPointProblem.linearization>`);
* ``Jv``: a Jacobian–vector product by forward-mode AD (:func:`torch.func.jvp`).

No d×d matrix is formed, except by :meth:`LinearMap.dense <gradscope.LinearMap.dense>` on request (the reference
path for small d). :meth:`LinearMap.to_scipy <gradscope.LinearMap.to_scipy>` exports a map to
:class:`scipy.sparse.linalg.LinearOperator` for scipy's solvers and eigensolvers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np
import torch

from ._checks import check_damping, fail
from .problem import FixedPointProblem, Params, check_problem

__all__ = ["JacobianOperators", "LinearMap"]

Matvec = Callable[[torch.Tensor], torch.Tensor]


class LinearMap:
    """A linear map on tensors shaped like the state, applied matrix-free.

    Args:
        matvec: ``v ↦ A v`` on tensors shaped like ``like``.
        like: a tensor with the shape, dtype and device of the vectors.
        name: what the map is, for messages (``"Jᵀ"``, ``"I − Jᵀ"``, ...).
        batched_matvec: optional ``V ↦ A V`` on a stack ``V`` of shape ``(k, *like.shape)``,
            used by :meth:`dense`.
        transpose: optional factory of the transposed map.
        counter: a one-element list incremented by each application (shared by maps
            that cost the same product, so that the count is in VJPs or JVPs).
        cost: how much one application adds to ``counter`` (default 1).

    Example:
        >>> import torch, gradscope as gs
        >>> A = gs.LinearMap(lambda v: 2 * v, torch.zeros(3), "2I")
        >>> A(torch.ones(3))
        tensor([2., 2., 2.])
        >>> A.dense()
        tensor([[2., 0., 0.],
                [0., 2., 0.],
                [0., 0., 2.]])

    """

    def __init__(
        self,
        matvec: Matvec,
        like: torch.Tensor,
        name: str,
        *,
        batched_matvec: Matvec | None = None,
        transpose: Callable[[], LinearMap] | None = None,
        counter: list[int] | None = None,
        cost: int = 1,
    ) -> None:
        self._matvec = matvec
        self._batched = batched_matvec
        self._transpose = transpose
        self.like = like
        self.name = name
        self.counter = [0] if counter is None else counter
        self.cost = cost

    @property
    def shape(self) -> torch.Size:
        """Shape of the vectors the map acts on."""
        return self.like.shape

    @property
    def size(self) -> int:
        """Number of entries of a vector, the matrix's order."""
        return self.like.numel()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Apply the map to ``v``."""
        if v.shape != self.like.shape:
            fail(
                f"LinearMap({self.name})",
                f"vector of shape {tuple(v.shape)}; expected {tuple(self.like.shape)}.",
            )
        self.counter[0] += self.cost
        return self._matvec(v)

    def apply_batch(self, V: torch.Tensor) -> torch.Tensor:
        """Apply the map to each of ``V[0], V[1], ...`` (one product each)."""
        self.counter[0] += self.cost * V.shape[0]
        if self._batched is not None:
            return self._batched(V)
        return torch.stack([self._matvec(v) for v in V])

    @property
    def T(self) -> LinearMap:
        """The transposed map (where known)."""
        if self._transpose is None:
            fail(
                f"LinearMap({self.name}).T", "this map has no known transpose.", NotImplementedError
            )
        assert self._transpose is not None
        return self._transpose()

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
                columns.append(self.apply_batch(V.contiguous()).reshape(block.shape[0], samples, n))
            return torch.cat(columns).permute(1, 2, 0)  # (samples, n rows, n columns)
        N = like.numel()
        eye = torch.eye(N, dtype=like.dtype, device=like.device)
        columns = [
            self.apply_batch(eye[s : s + chunk].reshape((-1, *like.shape))).reshape(-1, N)
            for s in range(0, N, chunk)
        ]
        return torch.cat(columns).T

    def to_scipy(self):
        """This map as a :class:`scipy.sparse.linalg.LinearOperator` on flat float64 vectors.

        ``rmatvec`` is provided where the transpose is known. Each product copies the
        vector between numpy and the tensor's device: a reference path, not a fast one.
        """
        from scipy.sparse.linalg import LinearOperator

        like = self.like

        def to_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x).reshape(like.shape)).to(like)

        def matvec(x: np.ndarray) -> np.ndarray:
            return self(to_tensor(x)).detach().cpu().double().numpy().reshape(-1)

        rmatvec = None
        if self._transpose is not None:
            transposed = self.T

            def rmatvec(x: np.ndarray) -> np.ndarray:
                return transposed(to_tensor(x)).detach().cpu().double().numpy().reshape(-1)

        N = like.numel()
        return LinearOperator((N, N), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)

    def __repr__(self) -> str:
        return f"LinearMap({self.name}, shape={tuple(self.like.shape)}, dtype={self.like.dtype})"


class JacobianOperators:
    r"""The Jacobians of F at h*, as matrix-free maps, with VJP/JVP counters.

    Attributes:
        vjps: number of VJPs taken so far (``Jᵀv``, ``F_θᵀ v``).
        jvps: number of JVPs taken so far (``Jv``).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.2], [0.0, 0.3]], dtype=torch.float64)
        >>> fn = lambda p, h: p["W"] @ h
        >>> problem = gs.FixedPointProblem.from_function(fn, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> ops = gs.JacobianOperators(problem)
        >>> torch.allclose(ops.J.dense(), W), torch.allclose(ops.JT.dense(), W.T)
        (True, True)

    """

    def __init__(self, problem: FixedPointProblem) -> None:
        check_problem("JacobianOperators", problem)
        self.problem = problem
        self._vjp_count = [0]
        self._jvp_count = [0]

    @property
    def vjps(self) -> int:
        """VJPs taken through these operators."""
        return self._vjp_count[0]

    @property
    def jvps(self) -> int:
        """JVPs taken through these operators."""
        return self._jvp_count[0]

    # ------------------------------------------------------------------ raw products
    def _vjp_h(self, v: torch.Tensor) -> torch.Tensor:
        lin = self.problem.linearization
        (out,) = torch.autograd.grad(lin.output, lin.h, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if out is None else out

    def _vjp_h_batched(self, V: torch.Tensor) -> torch.Tensor:
        lin = self.problem.linearization
        try:
            (out,) = torch.autograd.grad(
                lin.output, lin.h, V, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        except RuntimeError:  # some ops have no batching rule: fall back to a loop
            return torch.stack([self._vjp_h(v) for v in V])
        return torch.zeros_like(V) if out is None else out

    def _jvp_h(self, v: torch.Tensor) -> torch.Tensor:
        p = self.problem
        params = {n: t.detach() for n, t in p.params.items()}
        inputs = tuple(x.detach() for x in p.inputs)
        _, tangent = torch.func.jvp(lambda h: p.fn(params, h, *inputs), (p.h_star,), (v,))
        return tangent

    # ------------------------------------------------------------------ maps
    @cached_property
    def JT(self) -> LinearMap:
        """``v ↦ Jᵀv`` (one VJP)."""
        return LinearMap(
            self._vjp_h,
            self.problem.h_star,
            "Jᵀ",
            batched_matvec=self._vjp_h_batched,
            transpose=lambda: self.J,
            counter=self._vjp_count,
        )

    @cached_property
    def J(self) -> LinearMap:
        """``v ↦ Jv`` (one JVP)."""
        return LinearMap(
            self._jvp_h,
            self.problem.h_star,
            "J",
            transpose=lambda: self.JT,
            counter=self._jvp_count,
        )

    @cached_property
    def adjoint(self) -> LinearMap:
        """``v ↦ (I − Jᵀ)v``: the matrix of the adjoint system ``(I − Jᵀ)u = g`` (one VJP)."""
        return LinearMap(
            lambda v: v - self._vjp_h(v),
            self.problem.h_star,
            "I − Jᵀ",
            batched_matvec=lambda V: V - self._vjp_h_batched(V),
            transpose=lambda: self.identity_minus_J,
            counter=self._vjp_count,
        )

    @cached_property
    def identity_minus_J(self) -> LinearMap:
        """``v ↦ (I − J)v`` (one JVP)."""
        return LinearMap(
            lambda v: v - self._jvp_h(v),
            self.problem.h_star,
            "I − J",
            transpose=lambda: self.adjoint,
            counter=self._jvp_count,
        )

    def damped_T(self, damping: float) -> LinearMap:
        """``v ↦ B_λᵀ v = (1 − λ)v + λJᵀv`` (one VJP)."""
        check_damping("JacobianOperators.damped_T", damping)
        lam = float(damping)
        return LinearMap(
            lambda v: (1 - lam) * v + lam * self._vjp_h(v),
            self.problem.h_star,
            f"B_{lam:g}ᵀ",
            batched_matvec=lambda V: (1 - lam) * V + lam * self._vjp_h_batched(V),
            transpose=lambda: self.damped(lam),
            counter=self._vjp_count,
        )

    def damped(self, damping: float) -> LinearMap:
        """``v ↦ B_λ v = (1 − λ)v + λJv`` (one JVP)."""
        check_damping("JacobianOperators.damped", damping)
        lam = float(damping)
        return LinearMap(
            lambda v: (1 - lam) * v + lam * self._jvp_h(v),
            self.problem.h_star,
            f"B_{lam:g}",
            transpose=lambda: self.damped_T(lam),
            counter=self._jvp_count,
        )

    # ------------------------------------------------------------------ parameter side
    def param_vjp(self, v: torch.Tensor) -> tuple[Params, tuple[torch.Tensor | None, ...]]:
        """``(F_θᵀ v, F_xᵀ v)``: the parameter gradients (a dict) and input gradients.

        One VJP. An input that is not floating, or that F does not use, gets ``None``
        (non-floating) or zeros (unused).
        """
        lin = self.problem.linearization
        self._vjp_count[0] += 1
        float_inputs = [x for x in lin.inputs if x.is_floating_point()]
        leaves = [*lin.params.values(), *float_inputs]
        if not leaves:
            return {}, tuple(None for _ in lin.inputs)
        grads = torch.autograd.grad(lin.output, leaves, v, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]
        n = len(lin.params)
        params = dict(zip(lin.params, grads[:n]))
        it = iter(grads[n:])
        inputs = tuple(next(it) if x.is_floating_point() else None for x in lin.inputs)
        return params, inputs

    def param_jacobian_dense(self) -> torch.Tensor:
        """``F_θ`` as a dense ``(d, p)`` matrix (d = h*.numel(), p = number of parameters).

        Row i is ``F_θᵀ e_i``; p counts the parameters in ``param_names`` order, flattened.
        Small problems only.
        """
        h = self.problem.h_star
        N = h.numel()
        rows = []
        eye = torch.eye(N, dtype=h.dtype, device=h.device)
        for i in range(N):
            grads, _ = self.param_vjp(eye[i].reshape(h.shape))
            rows.append(
                torch.cat([g.reshape(-1) for g in grads.values()]) if grads else h.new_zeros(0)
            )
        return torch.stack(rows)
