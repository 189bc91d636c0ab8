"""Input validation shared by the public entry points.

Every message has the form ``"gradscope.<call>: <what it got>; expected <what>. <fix>"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

import torch


def fail(call: str, message: str, kind: type[Exception] = ValueError) -> NoReturn:
    """Raise ``kind`` with the message prefixed by the public call's name."""
    raise kind(f"gradscope.{call}: {message}")


def check_positive(call: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    """Check that a tolerance-like number is a finite positive float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(call, f"{name}={value!r} is not a number; expected a float.", TypeError)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not math.isfinite(value):
        bound = "≥ 0" if allow_zero else "> 0"
        fail(call, f"{name}={value!r}; expected a finite number {bound}.")


def check_bool(call: str, name: str, value: object) -> None:
    """Check that a flag is a bool (a truthy string must not switch a mode on)."""
    if not isinstance(value, bool):
        fail(
            call,
            f"{name}={value!r} is a {type(value).__name__}; expected True or False.",
            TypeError,
        )


def check_steps(call: str, name: str, value: int, minimum: int = 1) -> None:
    """Check that a step count is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(call, f"{name}={value!r} is not an int; expected an integer ≥ {minimum}.", TypeError)
    if value < minimum:
        fail(call, f"{name}={value}; expected an integer ≥ {minimum}.")


def check_damping(call: str, value: float) -> None:
    """Check ``0 < damping ≤ 1`` (:ref:`theory-phantom-gradients`: λ ∈ (0, 1])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(call, f"damping={value!r} is not a number; expected a float in (0, 1].", TypeError)
    if not (0.0 < value <= 1.0):
        fail(
            call,
            f"damping={value!r}; expected a number in (0, 1]. Damping λ mixes the old and new "
            "state, h ← (1 − λ)h + λF(h); λ = 1 is the undamped step.",
        )


def check_tensor(call: str, name: str, value: object) -> torch.Tensor:
    """Check that ``value`` is a tensor and return it."""
    if not isinstance(value, torch.Tensor):
        fail(call, f"{name} is a {type(value).__name__}; expected a torch.Tensor.", TypeError)
    assert isinstance(value, torch.Tensor)
    return value


def check_floating(call: str, name: str, value: torch.Tensor) -> None:
    """Check that a tensor has a floating-point dtype."""
    if not value.is_floating_point():
        fail(
            call,
            f"{name} has dtype {value.dtype}; expected a floating dtype (float32 or float64). "
            f"Convert it with {name}.double() or .float().",
            TypeError,
        )


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every tensor holds no inf or NaN (integer and bool tensors always do).

    Returns:
        ``True`` when every entry of every tensor is finite.

    """
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def check_finite(call: str, name: str, value: torch.Tensor) -> None:
    """Check that a tensor holds no inf or NaN (a meta tensor has no values to check)."""
    if value.device.type != "meta" and not all_finite(value):
        fail(call, f"{name} contains inf or NaN; expected finite values.")


def check_same_dtype_device(
    call: str,
    reference_name: str,
    reference: torch.Tensor,
    others: Sequence[tuple[str, torch.Tensor]],
) -> None:
    """Check that floating tensors share the reference's dtype and device."""
    for name, t in others:
        if t.device != reference.device:
            fail(
                call,
                f"{name} is on {t.device} but {reference_name} is on {reference.device}; "
                f"expected one device. Move them with .to({reference_name}.device).",
            )
        if t.is_floating_point() and t.dtype != reference.dtype:
            fail(
                call,
                f"{name} has dtype {t.dtype} but {reference_name} has {reference.dtype}; "
                f"expected one dtype. Convert with .to({reference.dtype}).",
                TypeError,
            )


def evaluate_map_checked(
    call: str,
    evaluate: Callable[[], object],
    h: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    h_name: str,
) -> torch.Tensor:
    """``evaluate()`` (F at the state ``h``) without autograd, its failures explained.

    An exception inside F is re-raised as a ValueError naming the call and the shapes
    passed; F must return a tensor shaped like ``h``, and must not write into ``h`` (the
    state is shared by every product gradscope takes: an in-place F would change it under
    them). An empty state (a batch of 0 samples) is refused.

    Returns:
        ``F(h)``.

    Raises:
        ValueError: F fails, writes into h, returns another shape, or the state is empty.
        TypeError: F returns something other than a tensor.

    """
    if h.numel() == 0:
        fail(
            call,
            f"{h_name} has shape {tuple(h.shape)}, which holds no entries (an empty batch?); "
            "expected at least one sample.",
        )
    version = h._version
    try:
        with torch.no_grad():
            fh = evaluate()
    except Exception as error:  # re-raised with the shapes that were passed
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs) or "none"
        fail(
            call,
            f"calling F with {h_name} of shape {tuple(h.shape)} and inputs of shapes "
            f"[{shapes}] failed with {type(error).__name__}: {error}. Check that the "
            "inputs are those the layer takes after h, with the right shapes.",
        )
    if h._version != version:
        fail(
            call,
            f"F wrote into {h_name} in place; expected F to return a new tensor and leave its "
            "input alone. Use out-of-place operations on the state (h = h + ..., torch.tanh(h), "
            "not h += ..., h.tanh_(), h[...] = ...).",
        )
    if not isinstance(fh, torch.Tensor):
        fail(
            call,
            f"F returned a {type(fh).__name__}; expected a tensor shaped like {h_name}.",
            TypeError,
        )
    if fh.shape != h.shape:
        fail(
            call,
            f"F returned shape {tuple(fh.shape)} for {h_name} of shape {tuple(h.shape)}; "
            "expected the same shape (F maps a state to the next state).",
        )
    return fh


def tf32_hint(is_cuda: bool, dtype: torch.dtype) -> str:
    """A sentence for failure messages of float32 CUDA solves while TF32 is enabled.

    TF32 matmuls and convolutions (cuDNN's default) carry ~1e-3 relative error per
    product; no float32 solve then reaches a tighter tolerance (measured on an H100).

    Returns:
        The sentence, or an empty string when TF32 is off or irrelevant.

    """
    if not (is_cuda and dtype == torch.float32):
        return ""
    if torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32:
        return (
            " TF32 is enabled (torch.backends.cudnn.allow_tf32 / cuda.matmul.allow_tf32): "
            "its products carry ~1e-3 relative error, so float32 solves stall near that "
            "level; set both to False for tight tolerances."
        )
    return ""


def require(module: str, call: str, what: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise an ImportError that says how to install it.

    Args:
        module: the dotted module name (``"pandas"``, ``"torch.utils.tensorboard"``).
        call: the public call that needs it, for the message.
        what: what it is needed for.
        extra: the gradscope extra that installs it (``"logging"``, ``"data"``).

    Returns:
        The module.

    Raises:
        ImportError: it is not installed.

    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ImportError(
            f"gradscope.{call}: {package} is not installed; expected it for {what}. Install it "
            f"with `pip install gradscope[{extra}]`."
        ) from error


def check_iterable(call: str, name: str, value: object) -> list:
    """Check that ``value`` is an iterable (not a string) and return it as a list."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        fail(
            call,
            f"{name}={value!r} is a {type(value).__name__}; expected a list or tuple.",
            TypeError,
        )
    return list(value)


def check_seed(call: str, value: object) -> None:
    """Check that a random seed is an int (a float or string would seed nothing reproducible)."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(call, f"seed={value!r} is not an int; expected an integer.", TypeError)


def check_like(
    call: str,
    name: str,
    value: object,
    reference: torch.Tensor,
    reference_name: str,
    fix: str = "",
) -> torch.Tensor:
    """Check a tensor that must match ``reference``: floating, same shape, dtype, device, finite.

    ``fix`` is appended to the shape message (how to get the right tensor).

    Returns:
        ``value``, as a tensor.

    """
    value = check_tensor(call, name, value)
    check_floating(call, name, value)
    if value.shape != reference.shape:
        fail(
            call,
            f"{name} has shape {tuple(value.shape)}; expected the shape of {reference_name}, "
            f"{tuple(reference.shape)}." + (f" {fix}" if fix else ""),
        )
    check_same_dtype_device(call, reference_name, reference, [(name, value)])
    check_finite(call, name, value)
    return value
