"""Forward solvers: find ``h* = F(h*, x)`` by damped fixed-point iteration or Anderson.

gradscope is not a DEQ framework, but its tests, demos and analysis need a solid forward
solver. Both methods are batched: with ``per_sample=True`` (the default) each sample of
a batched state keeps its own Anderson mixing weights, as in Bai et al.'s DEQ code;
every sample's convergence is judged on its own relative residual
``‖F(h) − h‖ / ‖F(h)‖``. Whatever the method, the returned value is the iterate with the
smallest residual seen, and that residual is the true one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import (
    check_bool,
    check_damping,
    check_finite,
    check_floating,
    check_positive,
    check_same_dtype_device,
    check_steps,
    check_tensor,
    evaluate_map_checked,
    fail,
    tf32_hint,
)
from .layout import SampleLayout
from .residual import relative_residual
from .status import report

__all__ = ["Anderson", "FixedPointResult", "Picard", "find_fixed_point"]

_CALL = "find_fixed_point"


@dataclass(frozen=True)
class Picard:
    """Damped fixed-point iteration ``h ← (1 − λ) h + λ F(h)``.

    Converges when ρ of the damped Jacobian ``(1 − λ)I + λJ`` is below 1.

    Args:
        damping: λ in (0, 1]; 1 is the plain iteration ``h ← F(h)``.

    Example:
        >>> import torch, gradscope as gs
        >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
        >>> method = gs.fixed_point.Picard(damping=0.8)
        >>> fp = gs.find_fixed_point(lambda h, x: torch.tanh(0.5 * h + x), x, method=method, rtol=1e-10)
        >>> fp.converged, fp.residual < 1e-10
        (True, True)

    """

    damping: float = 1.0

    def __post_init__(self) -> None:
        check_damping("Picard", self.damping)


@dataclass(frozen=True)
class Anderson:
    """Anderson acceleration (type II), per sample, as in the DEQ reference code.

    Mixes the last ``memory`` iterates with weights α minimising ``‖Σ α_i (F(h_i) − h_i)‖``
    subject to ``Σ α_i = 1`` (a ridge of ``regularization`` times the mean squared
    residual keeps the normal equations solvable), then ``h ← mixing · Σ α_i F(h_i) + (1 − mixing) · Σ α_i h_i``.

    Args:
        memory: number of past iterates mixed (m ≥ 1).
        mixing: β in (0, 1].
        regularization: relative ridge added to the normal equations (> 0).

    Example:
        >>> import torch, gradscope as gs
        >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
        >>> method = gs.fixed_point.Anderson(memory=3)
        >>> fp = gs.find_fixed_point(lambda h, x: torch.tanh(0.5 * h + x), x, method=method, rtol=1e-12)
        >>> fp.converged, fp.residual < 1e-12
        (True, True)

    """

    memory: int = 5
    mixing: float = 1.0
    regularization: float = 1e-8

    def __post_init__(self) -> None:
        check_steps("Anderson", "memory", self.memory)
        check_damping("Anderson", self.mixing)
        check_positive("Anderson", "regularization", self.regularization)


@dataclass
class FixedPointResult:
    """What :func:`~gradscope.find_fixed_point` found.

    Attributes:
        value: the best iterate (smallest residual), detached.
        converged: whether every sample met ``rtol`` (or ``atol``).
        residual: the largest per-sample relative residual ``‖F(h) − h‖ / ‖F(h)‖``.
        residual_per_sample: relative residual per sample.
        absolute_residual_per_sample: ``‖F(h) − h‖`` per sample.
        trace: the largest relative residual after each step.
        steps: iterations taken.
        evaluations: calls of F.

    Example:
        >>> import torch, gradscope as gs
        >>> h0 = torch.zeros(3, dtype=torch.float64)
        >>> fp = gs.find_fixed_point(lambda h: 0.5 * h + 1.0, h0=h0, rtol=1e-12)  # h* = 2
        >>> fp.converged, fp.value.round(decimals=8).tolist(), len(fp.trace) == fp.steps
        (True, [2.0, 2.0, 2.0], True)

    """

    value: torch.Tensor
    converged: bool
    residual: float
    residual_per_sample: torch.Tensor
    absolute_residual_per_sample: torch.Tensor
    trace: list[float] = field(repr=False)
    steps: int
    evaluations: int

    def __repr__(self) -> str:
        return (
            f"FixedPointResult(converged={self.converged}, residual={self.residual:.3e}, "
            f"steps={self.steps}, evaluations={self.evaluations}, shape={tuple(self.value.shape)})"
        )


def _as_map(module_or_fn: nn.Module | Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor]):
    if not callable(module_or_fn):
        fail(
            _CALL,
            f"module_or_fn is a {type(module_or_fn).__name__}; expected an nn.Module or a "
            "callable f(h, *inputs) returning the next state.",
            TypeError,
        )

    def f(h: torch.Tensor) -> torch.Tensor:
        return module_or_fn(h, *inputs)

    return f


def _checked_initial_state(f, inputs: Sequence[torch.Tensor], module_or_fn, h0) -> torch.Tensor:
    """``h0`` (inferred when ``None``), checked: a finite, non-empty floating tensor.

    Returns:
        The detached initial state.

    """
    if h0 is None:
        h0 = _initial_state(f, inputs, module_or_fn)
    check_tensor(_CALL, "h0", h0)
    check_floating(_CALL, "h0", h0)
    check_finite(_CALL, "h0", h0)
    if h0.numel() == 0:
        fail(
            _CALL,
            f"h0 has shape {tuple(h0.shape)}, which holds no entries (an empty batch?); "
            "expected at least one sample.",
        )
    check_same_dtype_device(_CALL, "h0", h0, [(f"inputs[{i}]", x) for i, x in enumerate(inputs)])
    return h0.detach()


def _checked_on_first_call(f, inputs: Sequence[torch.Tensor]):
    """``f`` whose first evaluation explains a failure or a wrong output shape (no extra call)."""
    checked = False

    def first_checked(h: torch.Tensor) -> torch.Tensor:
        nonlocal checked
        if checked:
            return f(h)
        checked = True
        return evaluate_map_checked(_CALL, lambda: f(h), h, inputs, "h0")

    return first_checked


def _initial_state(f, inputs: Sequence[torch.Tensor], module_or_fn) -> torch.Tensor:
    """Guess a zero initial state when ``h0`` is not given.

    Tries, in order: ``module.initial_state(*inputs)`` if it exists; zeros shaped like the
    first input; zeros shaped like the first input with its last dimension, then its
    dimension 1, replaced by each size that occurs in the module's parameters. A shape is
    accepted only if F maps it to the same shape.

    Returns:
        The zero state.

    Raises:
        ValueError: no shape could be inferred (the message says how to pass h0).

    """
    initial = getattr(module_or_fn, "initial_state", None)
    if callable(initial):
        return initial(*inputs)
    tensors = [x for x in inputs if isinstance(x, torch.Tensor) and x.is_floating_point()]
    if not tensors:
        fail(
            _CALL,
            "h0 was not given and there is no floating input to take the state's shape, "
            "dtype and device from; pass h0=torch.zeros(...) shaped like the state.",
        )
    x = tensors[0]
    candidates: list[tuple[int, ...]] = [tuple(x.shape)]
    sizes: list[int] = []
    if isinstance(module_or_fn, nn.Module):
        for p in module_or_fn.parameters():
            sizes.extend(s for s in p.shape if s not in sizes)
    for dim in (-1, 1):
        if x.dim() >= (2 if dim == 1 else 1):
            for s in sizes:
                shape = list(x.shape)
                shape[dim] = s
                candidates.append(tuple(shape))
    for candidate in dict.fromkeys(candidates):
        h0 = torch.zeros(candidate, dtype=x.dtype, device=x.device)
        try:
            out = f(h0)
        except Exception:  # a shape F does not take: try the next candidate
            continue
        if isinstance(out, torch.Tensor) and tuple(out.shape) == candidate:
            return h0
    fail(
        _CALL,
        f"h0 was not given and no state shape could be inferred from the inputs "
        f"(tried {list(dict.fromkeys(candidates))}); pass h0=torch.zeros(...) shaped like "
        "the state, or give the module an initial_state(*inputs) method.",
    )


def find_fixed_point(
    module_or_fn: nn.Module | Callable[..., torch.Tensor],
    *inputs: torch.Tensor,
    h0: torch.Tensor | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_steps: int = 200,
    method: Anderson | Picard | None = None,
    per_sample: bool = True,
    strict: bool = False,
    warn: bool = True,
) -> FixedPointResult:
    r"""Solve ``h = F(h, *inputs)`` for h.

    A sample has converged when ``‖F(h) − h‖ ≤ max(rtol · ‖F(h)‖, atol)``. Runs under
    ``torch.no_grad()``; the returned state is detached.

    Args:
        module_or_fn: the cell: a module or function called as ``F(h, *inputs)``.
        *inputs: the inputs x.
        h0: initial state; default zeros, shaped by the rule in the source
            (``initial_state`` method, else the first input's shape, else that shape with
            one dimension replaced by a parameter size).
        rtol: relative tolerance (> 0).
        atol: absolute tolerance (≥ 0).
        max_steps: iteration budget (≥ 1).
        method: :class:`~gradscope.fixed_point.Anderson` (default) or :class:`~gradscope.fixed_point.Picard`.
        per_sample: Anderson weights per sample (dimension 0) rather than for the whole
            batch as one vector.
        strict: raise :class:`~gradscope.ConvergenceError` instead of warning.
        warn: warn (:class:`~gradscope.ConvergenceWarning`) when not converged.

    Returns:
        A :class:`~gradscope.fixed_point.FixedPointResult`.

    Example:
        >>> import torch, gradscope as gs
        >>> x = torch.tensor([0.5, -1.0], dtype=torch.float64)
        >>> fp = gs.find_fixed_point(lambda h, x: torch.tanh(0.5 * h + x), x, rtol=1e-12)
        >>> fp.converged, fp.residual < 1e-12
        (True, True)

    """
    method = Anderson() if method is None else method
    if not isinstance(method, (Anderson, Picard)):
        fail(
            _CALL,
            f"method={method!r}; expected gradscope.fixed_point.Anderson(...) or gradscope.fixed_point.Picard(...).",
            TypeError,
        )
    check_positive(_CALL, "rtol", rtol)
    check_positive(_CALL, "atol", atol, allow_zero=True)
    check_steps(_CALL, "max_steps", max_steps)
    check_bool(_CALL, "per_sample", per_sample)
    check_bool(_CALL, "strict", strict)
    check_bool(_CALL, "warn", warn)
    for i, x in enumerate(inputs):
        check_tensor(_CALL, f"inputs[{i}]", x)
        if x.is_floating_point() or x.is_complex():
            check_finite(_CALL, f"inputs[{i}]", x)
    f = _as_map(module_or_fn, inputs)
    with torch.no_grad():
        h0 = _checked_initial_state(f, inputs, module_or_fn, h0)
        f = _checked_on_first_call(f, inputs)
        if isinstance(method, Picard):
            result = _picard(f, h0, method, rtol, atol, max_steps)
        else:
            result = _anderson(f, h0, method, rtol, atol, max_steps, per_sample)
    if not result.converged and (warn or strict):
        report(
            f"gradscope.find_fixed_point: not converged after {result.steps} steps: relative "
            f"residual {result.residual:.3e} > rtol={rtol:g}. Raise max_steps, use "
            "Anderson, damp (Picard(damping<1)), or check that F is contractive."
            + tf32_hint(result.value.is_cuda, result.value.dtype),
            strict=strict,
        )
    return result


class _Tracker:
    """Keeps each sample's best iterate and its residual."""

    def __init__(self, h0: torch.Tensor, rtol: float, atol: float) -> None:
        self.best = h0.clone()
        n = SampleLayout(h0.shape, per_sample=True).rows
        self.best_abs = torch.full((n,), math.inf, dtype=h0.dtype, device=h0.device)
        self.best_rel = self.best_abs.clone()
        self.rtol, self.atol = rtol, atol
        self.trace: list[float] = []

    def update(self, h: torch.Tensor, fh: torch.Tensor) -> bool:
        absolute, relative = relative_residual(h, fh)
        finite = torch.isfinite(absolute) & torch.isfinite(h.reshape(absolute.shape[0], -1)).all(1)
        better = finite & (relative < self.best_rel)
        mask = SampleLayout(h.shape, per_sample=True).expand(better)
        self.best = torch.where(mask, h, self.best)
        self.best_abs = torch.where(better, absolute, self.best_abs)
        self.best_rel = torch.where(better, relative, self.best_rel)
        current = float(relative.max()) if bool(finite.all()) else math.inf
        self.trace.append(current)
        return bool(self.converged_per_sample.all())

    @property
    def converged_per_sample(self) -> torch.Tensor:
        return (self.best_abs <= self.atol) | (self.best_rel <= self.rtol)

    def result(self, steps: int, evaluations: int) -> FixedPointResult:
        return FixedPointResult(
            value=self.best,
            converged=bool(self.converged_per_sample.all()),
            residual=float(self.best_rel.max()),
            residual_per_sample=self.best_rel,
            absolute_residual_per_sample=self.best_abs,
            trace=self.trace,
            steps=steps,
            evaluations=evaluations,
        )


def _picard(f, h0, method: Picard, rtol, atol, max_steps) -> FixedPointResult:
    lam = method.damping
    tracker = _Tracker(h0, rtol, atol)
    h = h0
    for step in range(1, max_steps + 1):
        fh = f(h)
        if tracker.update(h, fh) or not math.isfinite(tracker.trace[-1]):
            return tracker.result(step, step)
        h = fh if lam == 1.0 else (1 - lam) * h + lam * fh
    fh = f(h)
    tracker.update(h, fh)
    return tracker.result(max_steps, max_steps + 1)


def _anderson(f, h0, method: Anderson, rtol, atol, max_steps, per_sample) -> FixedPointResult:
    shape = h0.shape
    n_rows = SampleLayout(h0.shape, per_sample).rows
    m, beta, reg = method.memory + 1, method.mixing, method.regularization
    X = h0.new_zeros(n_rows, m, h0.numel() // n_rows)
    FX = torch.zeros_like(X)
    tracker = _Tracker(h0, rtol, atol)

    def evaluate(x_flat: torch.Tensor) -> torch.Tensor:
        h = x_flat.reshape(shape)
        fh = f(h)
        tracker.update(h, fh)
        return fh.reshape(n_rows, -1)

    X[:, 0] = h0.reshape(n_rows, -1)
    FX[:, 0] = evaluate(X[:, 0])
    if tracker.converged_per_sample.all() or max_steps == 1:
        return tracker.result(1, 1)
    X[:, 1] = FX[:, 0]
    FX[:, 1] = evaluate(X[:, 1])
    H = h0.new_zeros(n_rows, m + 1, m + 1)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    y = h0.new_zeros(n_rows, m + 1, 1)
    y[:, 0] = 1
    eye = torch.eye(m, dtype=h0.dtype, device=h0.device)
    ridge_factor = max(reg, 10 * torch.finfo(h0.dtype).eps)
    tiny = torch.finfo(h0.dtype).tiny
    steps = 2
    while steps < max_steps and not tracker.converged_per_sample.all():
        if not math.isfinite(tracker.trace[-1]):
            break
        n = min(steps, m)
        G = FX[:, :n] - X[:, :n]
        GG = torch.bmm(G, G.transpose(1, 2))
        # A ridge relative to the residuals' size: an absolute one would swamp GGᵀ near
        # convergence and stall the method at the ridge's scale.
        ridge = ridge_factor * GG.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(tiny)
        H[:, 1 : n + 1, 1 : n + 1] = GG + ridge[:, None, None] * eye[:n, :n]
        alpha = torch.linalg.solve(H[:, : n + 1, : n + 1], y[:, : n + 1])[:, 1 : n + 1, 0]
        slot = steps % m
        mixed_f = (alpha[:, None] @ FX[:, :n])[:, 0]
        mixed_x = (alpha[:, None] @ X[:, :n])[:, 0]
        X[:, slot] = beta * mixed_f + (1 - beta) * mixed_x
        FX[:, slot] = evaluate(X[:, slot])
        steps += 1
    return tracker.result(steps, steps)
