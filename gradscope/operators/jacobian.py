r"""The Jacobians of F at the equilibrium, as operators, by automatic differentiation.

With ``J = ∂F/∂h`` at h* (:ref:`theory-setting`), everything gradscope computes is built
from

* ``Jᵀv``, ``F_θᵀ v`` and ``F_xᵀ v``: vector–Jacobian products that walk the one
  autograd graph of F at h* again
  (:attr:`FixedPointProblem.linearization <gradscope.FixedPointProblem.linearization>`);
* ``Jv`` and ``F_θ z``: Jacobian–vector products by forward-mode AD (:func:`torch.func.jvp`);
  where an op of F has no forward-mode rule (``torch._weight_norm``, which
  ``torch.nn.utils.weight_norm`` and ``parametrizations.weight_norm`` call), by two
  reverse passes through the linearization instead.

Whether the samples of a batched h* are independent is decided once per problem
(:attr:`FixedPointProblem.samples_independent <gradscope.FixedPointProblem.samples_independent>`)
and carried by the operators.

Example:
    >>> import torch, gradscope as gs
    >>> from gradscope.operators import jacobian_transpose
    >>> W = torch.tensor([[0.5, 0.2], [0.0, 0.3]], dtype=torch.float64)
    >>> problem = gs.FixedPointProblem.from_function(
    ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
    >>> JT = jacobian_transpose(problem)
    >>> torch.allclose(JT.dense(), W.T), torch.allclose(JT.T.dense(), W)
    (True, True)

"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..layout import samples_independent
from ..problem import FixedPointProblem, Params, check_problem
from .base import LinearOperator
from .function import FunctionOperator

__all__ = [
    "JacobianTranspose",
    "jacobian_transpose",
    "param_jacobian_dense",
    "param_jvp",
    "param_vjp",
    "param_vjp_and_unreached",
]


class JacobianTranspose(LinearOperator):
    r"""``v ↦ Jᵀv`` with ``J = ∂output/∂h``: one VJP through a recorded graph.

    Args:
        output: ``F(h)``, recorded with autograd from the leaf ``h``.
        h: the leaf (requires grad).
        jvp: ``v ↦ Jv`` by forward-mode AD, for ``T`` (optional).
        independent_samples: whether J is block-diagonal over samples; ``None`` decides
            it on first use, by ``decide`` or else by one probe
            (:func:`gradscope.layout.samples_independent`).
        decide: a function that returns the decision (a problem's cached one).

    Example:
        >>> import torch
        >>> from gradscope.operators import JacobianTranspose
        >>> M = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> h = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        >>> JT = JacobianTranspose(M @ h, h, independent_samples=False)
        >>> torch.allclose(JT.dense(), M.T)
        True

    """

    def __init__(
        self,
        output: torch.Tensor,
        h: torch.Tensor,
        *,
        jvp: Callable[[torch.Tensor], torch.Tensor] | None = None,
        independent_samples: bool | None = None,
        decide: Callable[[], bool] | None = None,
    ) -> None:
        self.output, self.h, self._jvp, self._decide = output, h, jvp, decide
        super().__init__(h, "Jᵀ", independent_samples=independent_samples)

    def _decide_independent(self) -> bool:
        """``decide()``, or one VJP probe (:func:`gradscope.layout.samples_independent`)."""
        if self._decide is not None:
            return self._decide()
        return samples_independent(self.matvec, self.h)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``Jᵀv`` (one VJP)."""
        (out,) = torch.autograd.grad(self.output, self.h, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if out is None else out

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``JᵀV[i]`` for each ``i``: one batched VJP where the ops allow it."""
        try:
            (out,) = torch.autograd.grad(
                self.output,
                self.h,
                V,
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
        except RuntimeError:  # some ops have no batching rule: fall back to a loop
            return super().matmat(V)
        return torch.zeros_like(V) if out is None else out

    def transpose(self) -> LinearOperator:
        """``v ↦ Jv`` (one JVP)."""
        if self._jvp is None:
            return super().transpose()
        return _JacobianForward(self._jvp, self)


class _JacobianForward(FunctionOperator):
    """``v ↦ Jv`` by one JVP; shares its transpose's sample-independence decision."""

    def __init__(self, jvp: Callable[[torch.Tensor], torch.Tensor], JT: JacobianTranspose) -> None:
        super().__init__(jvp, JT.like, "J", transpose=JT, independent_samples=None)
        self.JT = JT

    def _decide_independent(self) -> bool:
        return self.JT.independent_samples


def _jvp(problem: FixedPointProblem) -> Callable[[torch.Tensor], torch.Tensor]:
    params = {n: t.detach() for n, t in problem.params.items()}
    inputs = tuple(x.detach() for x in problem.inputs)
    fallback: list[Callable[[list[torch.Tensor]], torch.Tensor]] = []

    def jvp(v: torch.Tensor) -> torch.Tensor:
        if not fallback:
            try:
                _, tangent = torch.func.jvp(
                    lambda h: problem.fn(params, h, *inputs), (problem.h_star,), (v,)
                )[:2]
                return tangent
            except NotImplementedError as error:
                if not no_forward_ad(error):
                    raise
            lin = problem.linearization
            fallback.append(jvp_by_two_vjps(lin.output, [lin.h]))
        return fallback[0]([v])

    return jvp


def no_forward_ad(error: NotImplementedError) -> bool:
    """Whether ``error`` is torch's "no forward AD for this op" (``torch._weight_norm``, …)."""
    return "forward AD" in str(error)


def jvp_by_two_vjps(
    output: torch.Tensor, leaves: list[torch.Tensor]
) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """``tangents ↦ ∂output/∂leaves · tangents`` by reverse mode twice, for ops without forward AD.

    ``a(w) = (∂output/∂leaves)ᵀ w`` is linear in ``w``, so the JVP is the VJP of ``a`` at
    ``w = 0``: ``∂⟨a(w), t⟩/∂w``. ``a`` is recorded once (a backward with
    ``create_graph``); each JVP is then one backward through it.

    Returns:
        The map from one tangent per leaf to the output-shaped product.

    """
    w = torch.zeros_like(output, requires_grad=True)
    with torch.enable_grad():
        firsts = torch.autograd.grad(
            output, leaves, w, retain_graph=True, create_graph=True, allow_unused=True
        )

    def jvp(tangents: list[torch.Tensor]) -> torch.Tensor:
        pairs = [(a, t) for a, t in zip(firsts, tangents) if a is not None and a.requires_grad]
        if not pairs:
            return torch.zeros_like(output)
        (out,) = torch.autograd.grad(
            [a for a, _ in pairs],
            w,
            [t for _, t in pairs],
            retain_graph=True,
            allow_unused=True,
        )
        return torch.zeros_like(output) if out is None else out.detach()

    return jvp


def jacobian_transpose(problem: FixedPointProblem) -> JacobianTranspose:
    """``v ↦ Jᵀv`` at the problem's h* (its ``.T`` is ``v ↦ Jv``).

    Its samples are independent when the problem's are (probed once per problem, when
    first asked).

    Args:
        problem: the equilibrium.

    Returns:
        The operator.

    """
    check_problem("jacobian_transpose", problem)
    lin = problem.linearization
    return JacobianTranspose(
        lin.output, lin.h, jvp=_jvp(problem), decide=lambda: problem.samples_independent
    )


def param_vjp(
    problem: FixedPointProblem, v: torch.Tensor
) -> tuple[Params, tuple[torch.Tensor | None, ...]]:
    """``(F_θᵀ v, F_xᵀ v)``: the parameter gradients (a dict) and input gradients.

    One VJP through the problem's linearization. An input that is not floating gets
    ``None``; a parameter or input that F does not use gets zeros
    (:func:`~gradscope.operators.param_vjp_and_unreached` also says which parameters those are).

    Args:
        problem: the equilibrium.
        v: a state-shaped vector (the adjoint u).

    Returns:
        The parameter gradients and the input gradients.

    """
    params, inputs, _ = param_vjp_and_unreached(problem, v)
    return params, inputs


def param_vjp_and_unreached(
    problem: FixedPointProblem, v: torch.Tensor
) -> tuple[Params, tuple[torch.Tensor | None, ...], tuple[str, ...]]:
    """:func:`param_vjp`, and the names of the parameters that F's graph does not reach.

    Autograd finds no path from F's output to an unreached parameter; its gradient is
    reported as zeros.

    Args:
        problem: the equilibrium.
        v: a state-shaped vector (the adjoint u).

    Returns:
        The parameter gradients, the input gradients and the unreached parameters' names
        (in ``param_names`` order).

    """
    lin = problem.linearization
    float_inputs = [x for x in lin.inputs if x.is_floating_point()]
    leaves = [*lin.params.values(), *float_inputs]
    if not leaves:
        return {}, tuple(None for _ in lin.inputs), ()
    grads = torch.autograd.grad(lin.output, leaves, v, retain_graph=True, allow_unused=True)
    full = [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]
    n = len(lin.params)
    params = dict(zip(lin.params, full[:n]))
    unreached = tuple(name for name, g in zip(lin.params, grads[:n]) if g is None)
    it = iter(full[n:])
    inputs = tuple(next(it) if x.is_floating_point() else None for x in lin.inputs)
    return params, inputs, unreached


def flatten_params(tensors: Params) -> torch.Tensor:
    """The tensors of a parameter dict flattened and concatenated (in the dict's order).

    Returns:
        A 1-D tensor of ``sum(t.numel())`` entries.

    """
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten_params(z: torch.Tensor, like: Params) -> Params:
    """The inverse of :func:`flatten_params`: ``z`` cut into tensors shaped like ``like``'s.

    Returns:
        A dict with ``like``'s names, each a view of ``z``.

    """
    out, offset = {}, 0
    for name, p in like.items():
        out[name] = z[offset : offset + p.numel()].reshape(p.shape)
        offset += p.numel()
    return out


def param_jvp(problem: FixedPointProblem, z: torch.Tensor) -> torch.Tensor:
    """``F_θ z``: the parameter JVP for a flat parameter vector z (``param_names`` order).

    By forward-mode AD, or by two reverse passes where an op of F has no forward rule.

    Args:
        problem: the equilibrium.
        z: the parameters' tangent, flattened and concatenated.

    Returns:
        A state-shaped tensor.

    """
    params = {n: p.detach() for n, p in problem.params.items()}
    inputs = tuple(x.detach() for x in problem.inputs)
    tangents = unflatten_params(z, params)
    try:
        _, out = torch.func.jvp(
            lambda q: problem.fn(q, problem.h_star, *inputs), (params,), (tangents,)
        )[:2]
    except NotImplementedError as error:
        if not no_forward_ad(error):
            raise
        lin = problem.linearization
        return jvp_by_two_vjps(lin.output, list(lin.params.values()))(list(tangents.values()))
    return out


def param_jacobian_dense(problem: FixedPointProblem) -> torch.Tensor:
    """``F_θ`` as a dense ``(d, p)`` matrix (d = h*.numel(), p = number of parameters).

    Row i is ``F_θᵀ e_i``; p counts the parameters in ``param_names`` order, flattened.
    Small problems only.

    Args:
        problem: the equilibrium.

    Returns:
        The matrix.

    """
    h = problem.h_star
    eye = torch.eye(h.numel(), dtype=h.dtype, device=h.device)
    rows = []
    for i in range(h.numel()):
        grads, _ = param_vjp(problem, eye[i].reshape(h.shape))
        rows.append(flatten_params(grads) if grads else h.new_zeros(0))
    return torch.stack(rows)
