"""The entry point :func:`~gradscope.find_fixed_point` and how it infers and checks the initial state."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._checks import (
    check_bool,
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
from ..status import report
from .iterations import run_anderson, run_picard
from .methods import Anderson, FixedPointResult, Picard

__all__ = ["find_fixed_point"]

_CALL = "find_fixed_point"


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
    last_error = ""
    for candidate in dict.fromkeys(candidates):
        h0 = torch.zeros(candidate, dtype=x.dtype, device=x.device)
        try:
            out = f(h0)
        except Exception as error:  # a shape F does not take: try the next candidate
            last_error = f" (F on shape {candidate} raised {type(error).__name__}: {error})"
            continue
        if isinstance(out, torch.Tensor) and tuple(out.shape) == candidate:
            return h0
    fail(
        _CALL,
        f"h0 was not given and no state shape could be inferred from the inputs "
        f"(tried {list(dict.fromkeys(candidates))}){last_error}; pass h0=torch.zeros(...) "
        "shaped like the state, or give the module an initial_state(*inputs) method.",
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
            result = run_picard(f, h0, method, rtol, atol, max_steps)
        else:
            result = run_anderson(f, h0, method, rtol, atol, max_steps, per_sample)
    if not result.converged and (warn or strict):
        report(
            f"gradscope.find_fixed_point: not converged after {result.steps} steps: relative "
            f"residual {result.residual:.3e} > rtol={rtol:g}. Raise max_steps, use "
            "Anderson, damp (Picard(damping<1)), or check that F is contractive."
            + tf32_hint(result.value.is_cuda, result.value.dtype),
            strict=strict,
        )
    return result
