r"""Gradient estimators: the exact implicit gradient and the phantom gradients.

Every estimator turns the cotangent ``g = ∂ℓ/∂h*`` into parameter and input gradients
(:ref:`theory-exact-gradient`, :ref:`theory-phantom-gradients`):

================  ============================================  =======================
estimator         gradient                                      memory
================  ============================================  =======================
:class:`~gradscope.Exact`    ``F_θᵀ u*``, ``(I − Jᵀ)u* = g`` solved        one graph of F
:class:`~gradscope.Unrolled` backprop through k steps                      k graphs of F
                  ``h ← (1 − λ)h + λF(h)`` from ``stopgrad(h*)``
:class:`~gradscope.Neumann`  ``λ F_θᵀ Σ_{t<k} (B_λᵀ)^t g``,                one graph of F
                  ``B_λ = (1 − λ)I + λJ``
:class:`~gradscope.OneStep`  ``F_θᵀ g`` (k = 1, λ = 1; Jacobian-free)       one graph of F
================  ============================================  =======================

The phantom gradients are Geng et al., "On Training Implicit Models", NeurIPS 2021
(UPG and NPG, their eq. 9–10); :class:`~gradscope.OneStep` is Fung et al.'s JFB (AAAI 2022).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import (
    check_damping,
    check_finite,
    check_same_dtype_device,
    check_steps,
    check_tensor,
    fail,
)
from ._memory import GraphMeter
from .exceptions import ConvergenceWarning
from .operators import JacobianOperators
from .problem import FixedPointProblem, Params, check_problem
from .solvers import GMRES, BiCGSTAB, Dense, FixedPointIteration, Solution, linear_solve

__all__ = [
    "Cost",
    "Exact",
    "GradientEstimate",
    "Neumann",
    "OneStep",
    "Unrolled",
    "estimate_gradient",
    "user_gradient",
]


@dataclass(frozen=True)
class Exact:
    """The exact implicit gradient: solve ``(I − Jᵀ)u = g``, then ``∇_θ = F_θᵀ u``.

    Args:
        solver: a linear solver object (default :class:`~gradscope.GMRES` with the dtype's
            rtol: 1e-8 in float64, 1e-5 in float32).

    """

    solver: Dense | GMRES | BiCGSTAB | FixedPointIteration = field(default_factory=GMRES)

    def __post_init__(self) -> None:
        if not isinstance(self.solver, (Dense, GMRES, BiCGSTAB, FixedPointIteration)):
            fail(
                "Exact",
                f"solver={self.solver!r}; expected gradscope.GMRES(), BiCGSTAB(), "
                "FixedPointIteration() or Dense().",
                TypeError,
            )

    @property
    def name(self) -> str:
        """Short label for tables."""
        return f"Exact({type(self.solver).__name__})"


@dataclass(frozen=True)
class Unrolled:
    """The unrolling-based phantom gradient UPG A(k, λ) (Geng et al. 2021, equation 9).

    From ``h₀ = stopgrad(h*)`` run ``h_{t+1} = (1 − λ)h_t + λF(h_t, x; θ)`` for k steps
    and backpropagate ``g`` through them; Jacobians are taken along the trajectory.

    Args:
        steps: k ≥ 1.
        damping: λ in (0, 1].

    """

    steps: int = 5
    damping: float = 0.5

    def __post_init__(self) -> None:
        check_steps("Unrolled", "steps", self.steps)
        check_damping("Unrolled", self.damping)

    @property
    def name(self) -> str:
        """Short label for tables."""
        return f"Unrolled({self.steps}, {self.damping:g})"


@dataclass(frozen=True)
class Neumann:
    r"""The Neumann-series phantom gradient NPG (Geng et al. 2021, equation 10).

    ``v ← g``, then k − 1 times ``v ← g + B_λᵀ v``, then ``∇̂ = λ F_θᵀ v`` — that is
    ``λ F_θᵀ Σ_{t<k} (B_λᵀ)^t g`` with ``B_λ = (1 − λ)I + λJ`` at h*. k VJPs, one graph
    of F. Its adjoint error is ``u* − u_k = (B_λᵀ)^k u*`` [derived, :ref:`theory-neumann-error`].

    Args:
        steps: k ≥ 1.
        damping: λ in (0, 1].

    """

    steps: int = 5
    damping: float = 0.5

    def __post_init__(self) -> None:
        check_steps("Neumann", "steps", self.steps)
        check_damping("Neumann", self.damping)

    @property
    def name(self) -> str:
        """Short label for tables."""
        return f"Neumann({self.steps}, {self.damping:g})"


@dataclass(frozen=True)
class OneStep:
    """The one-step (Jacobian-free) gradient ``F_θᵀ g``: k = 1, λ = 1 of either phantom."""

    @property
    def name(self) -> str:
        """Short label for tables."""
        return "OneStep"

    @property
    def steps(self) -> int:
        """The number of steps, k = 1."""
        return 1

    @property
    def damping(self) -> float:
        """The damping, λ = 1."""
        return 1.0


Estimator = Exact | Unrolled | Neumann | OneStep


def check_estimator(call: str, estimator: object, name: str = "estimator") -> None:
    """Raise a TypeError naming ``call`` unless ``estimator`` is one of the four estimators."""
    if not isinstance(estimator, (Exact, Unrolled, Neumann, OneStep)):
        what = f"{name}={estimator!r}" if name == "estimator" else f"{name} contains {estimator!r}"
        fail(
            call,
            f"{what}; expected gradscope.Exact(), Unrolled(k, λ), Neumann(k, λ) or OneStep().",
            TypeError,
        )


@dataclass(frozen=True)
class Cost:
    """What an estimate cost.

    Attributes:
        vjps: vector–Jacobian products through F (a backward through k unrolled steps
            counts k; a batched product counts 1).
        seconds: wall time (CUDA synchronised), including the one forward pass of F that
            builds the graph at h* when the problem had not built it yet (a DEQ backward
            pays it too) and, for :class:`Exact`, the one-VJP sample-independence probe.
        graph_bytes: bytes of the tensors autograd saved for the graph(s) the estimate
            walks (unique storages): the activation memory, on any device.
        peak_cuda_bytes: peak CUDA memory allocated during the estimate (None on CPU).

    """

    vjps: int
    seconds: float
    graph_bytes: int
    peak_cuda_bytes: int | None = None


@dataclass
class GradientEstimate:
    """A gradient of the loss with respect to the parameters (and inputs) of F.

    Attributes:
        grads: parameter gradients keyed like ``named_parameters()``.
        input_grads: one gradient per input (``None`` for non-floating inputs).
        estimator: the estimator that produced it (or a label for a user's gradient).
        adjoint: the adjoint vector u with ``grads = F_θᵀ u`` (Exact, Neumann, OneStep).
        solution: the linear solve behind an :class:`Exact` estimate.
        cost: the :class:`Cost`.

    """

    grads: Params
    input_grads: tuple[torch.Tensor | None, ...]
    estimator: object
    adjoint: torch.Tensor | None = None
    solution: Solution | None = None
    cost: Cost | None = None

    @property
    def name(self) -> str:
        """Label of the estimator."""
        return getattr(self.estimator, "name", str(self.estimator))

    def flat(self) -> torch.Tensor:
        """All parameter gradients concatenated (in ``grads`` order)."""
        return torch.cat([g.reshape(-1) for g in self.grads.values()])

    @classmethod
    def from_grads(
        cls,
        grads: Mapping[str, torch.Tensor],
        input_grads: tuple[torch.Tensor | None, ...] = (),
        name: str = "user",
    ) -> GradientEstimate:
        """Wrap gradients computed elsewhere (a user's own training backward) for :func:`compare`."""
        for n, g in grads.items():
            check_tensor("GradientEstimate.from_grads", f"grads[{n!r}]", g)
        return cls(dict(grads), tuple(input_grads), name)

    def __repr__(self) -> str:
        cost = ""
        if self.cost is not None:
            cost = f", vjps={self.cost.vjps}, seconds={self.cost.seconds:.4f}"
        return f"GradientEstimate({self.name}, params={list(self.grads)}{cost})"


def user_gradient(
    module: nn.Module, problem: FixedPointProblem, name: str = "user"
) -> GradientEstimate:
    """Collect the ``.grad`` of ``module``'s parameters that ``problem`` differentiates.

    Use it to judge the gradient a training backward produced (TorchDEQ's phantom
    gradient, say) against :class:`Exact` on the same cotangent. ``module`` must be the
    cell the problem was built from (so the names match). The ``.grad`` values are
    copied, not changed. They include every path of the loss into those parameters:
    compare like with like (the cotangent on h* must be the one the training used).

    Raises:
        ValueError: a parameter has no ``.grad`` or is missing from ``module``.

    """
    named = dict(module.named_parameters())
    grads = {}
    for n in problem.param_names:
        if n not in named:
            fail(
                "user_gradient",
                f"module has no parameter {n!r}; pass the cell the problem was built from.",
            )
        if named[n].grad is None:
            fail(
                "user_gradient",
                f"parameter {n!r} has no .grad; run the training backward first (and do "
                "not zero the gradients before collecting them).",
            )
        grads[n] = named[n].grad.detach().clone()
    return GradientEstimate(grads, tuple(None for _ in problem.inputs), name)


# ---------------------------------------------------------------------- measurement
@contextlib.contextmanager
def _measure(device: torch.device) -> Iterator[dict]:
    record: dict = {}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    yield record
    if cuda:
        torch.cuda.synchronize(device)
        record["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    record["seconds"] = time.perf_counter() - start


# ---------------------------------------------------------------------- entry point
def estimate_gradient(
    problem: FixedPointProblem,
    cotangent: torch.Tensor,
    estimator: Estimator | None = None,
) -> GradientEstimate:
    r"""Estimate ``∇_θ ℓ`` and ``∇_x ℓ`` from the cotangent ``g = ∂ℓ/∂h*``.

    Args:
        problem: the equilibrium.
        cotangent: ``g``, shaped like h* (same dtype and device).
        estimator: :class:`Exact` (default), :class:`Unrolled`, :class:`Neumann` or
            :class:`OneStep`.

    Returns:
        A :class:`GradientEstimate`.

    Raises:
        TypeError, ValueError: bad input (the message says which and how to fix it).

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
        >>> fn = lambda p, h, x: p["W"] @ h + x
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> h = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W, x)
        >>> problem = gs.FixedPointProblem.from_function(fn, {"W": W}, h, x)
        >>> g = torch.tensor([1.0, -1.0], dtype=torch.float64)
        >>> exact = gs.estimate_gradient(problem, g, gs.Exact(gs.Dense()))
        >>> u = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - W.T, g)
        >>> torch.allclose(exact.grads["W"], torch.outer(u, h))
        True

    """
    call = "estimate_gradient"
    check_problem(call, problem)
    estimator = Exact() if estimator is None else estimator
    check_estimator(call, estimator, "estimator")
    cotangent = check_tensor(call, "cotangent", cotangent)
    if cotangent.shape != problem.h_star.shape:
        fail(
            call,
            f"cotangent has shape {tuple(cotangent.shape)}; expected the shape of h*, "
            f"{tuple(problem.h_star.shape)}. Pass g = ∂ℓ/∂h*, e.g. "
            "torch.autograd.grad(loss, h_star).",
        )
    check_same_dtype_device(call, "h*", problem.h_star, [("cotangent", cotangent)])
    check_finite(call, "cotangent", cotangent)
    g = cotangent.detach()
    if isinstance(estimator, Unrolled):
        return _unrolled(problem, g, estimator)
    if isinstance(estimator, Exact):
        return _exact(problem, g, estimator)
    return _neumann(problem, g, estimator)


def _exact(problem: FixedPointProblem, g: torch.Tensor, estimator: Exact) -> GradientEstimate:
    solver = estimator.solver
    ops = JacobianOperators(problem)
    with _measure(problem.device) as record:
        graph_bytes = (
            problem.linearization.graph_bytes
        )  # built here if not yet: it is backward work
        independent = problem.samples_independent
        if solver.per_sample and not independent:
            fail(
                "estimate_gradient",
                f"{type(solver).__name__}(per_sample=True) needs independent samples, but F "
                "couples the samples of h* (a VJP on one sample reaches others: BatchNorm in "
                "train mode?). Use per_sample=False or per_sample=None.",
            )
        per_sample = independent if solver.per_sample is None else solver.per_sample
        solution = linear_solve(ops.adjoint, g, solver, per_sample=per_sample)
        grads, input_grads = ops.param_vjp(solution.value)
    cost = Cost(ops.vjps, record["seconds"], graph_bytes, record.get("peak_cuda_bytes"))
    return GradientEstimate(grads, input_grads, estimator, solution.value, solution, cost)


def _neumann(
    problem: FixedPointProblem, g: torch.Tensor, estimator: Neumann | OneStep
) -> GradientEstimate:
    k, lam = estimator.steps, float(estimator.damping)
    ops = JacobianOperators(problem)
    with _measure(problem.device) as record:
        graph_bytes = (
            problem.linearization.graph_bytes
        )  # built here if not yet: it is backward work
        v, term = g, g
        for _ in range(k - 1):  # term_t = (B_λᵀ)^t g; v = Σ_{s≤t} term_s
            term = (1 - lam) * term + lam * ops.JT(term)
            v = v + term
        u = lam * v
        grads, input_grads = ops.param_vjp(u)
    if k > 1:
        _warn_if_series_grew(g, term, u, estimator)
    cost = Cost(ops.vjps, record["seconds"], graph_bytes, record.get("peak_cuda_bytes"))
    return GradientEstimate(grads, input_grads, estimator, u, None, cost)


def _warn_if_series_grew(
    g: torch.Tensor, last_term: torch.Tensor, u: torch.Tensor, estimator: Neumann
) -> None:
    g_norm = float(torch.linalg.vector_norm(g))
    ratio = float(torch.linalg.vector_norm(last_term)) / g_norm if g_norm > 0 else 0.0
    if not bool(torch.isfinite(u).all()):
        warnings.warn(
            f"gradscope.estimate_gradient: {estimator.name} produced inf/NaN: the Neumann series "
            "diverged (ρ(B_λ) ≥ 1). Lower the damping λ (gradscope.damping_limit gives the "
            "admissible range) or use Exact().",
            ConvergenceWarning,
            stacklevel=4,
        )
    elif ratio > 1.0:
        warnings.warn(
            f"gradscope.estimate_gradient: {estimator.name}: the Neumann terms grew, "
            f"‖(B_λᵀ)^(k−1) g‖ / ‖g‖ = {ratio:.3g} > 1. Either ρ(B_λ) ≥ 1 and the series "
            "diverges (lower λ), or B_λ is non-normal and its powers have not decayed yet "
            "(raise k). gradscope.check_theory tells which.",
            ConvergenceWarning,
            stacklevel=4,
        )


def _unrolled(problem: FixedPointProblem, g: torch.Tensor, estimator: Unrolled) -> GradientEstimate:
    k, lam = estimator.steps, float(estimator.damping)
    meter = GraphMeter()
    params = {n: p.detach().requires_grad_(True) for n, p in problem.params.items()}
    inputs = tuple(
        x.detach().requires_grad_(True) if x.is_floating_point() else x for x in problem.inputs
    )
    leaves = [*params.values(), *(x for x in inputs if x.is_floating_point())]
    with _measure(problem.device) as record:
        with torch.enable_grad(), meter.hooks():
            h = problem.h_star.detach()
            for _ in range(k):
                fh = problem.fn(params, h, *inputs)
                h = fh if lam == 1.0 else (1 - lam) * h + lam * fh
        if leaves:
            grads_list = torch.autograd.grad(h, leaves, g, allow_unused=True)
        else:
            grads_list = ()
        grads_list = [
            torch.zeros_like(leaf) if gr is None else gr for leaf, gr in zip(leaves, grads_list)
        ]
    n = len(params)
    grads = dict(zip(params, grads_list[:n]))
    it = iter(grads_list[n:])
    input_grads = tuple(next(it) if x.is_floating_point() else None for x in inputs)
    cost = Cost(k, record["seconds"], meter.bytes, record.get("peak_cuda_bytes"))
    return GradientEstimate(grads, input_grads, estimator, None, None, cost)
