"""The user's factory for ``gradscope check``: loading its file, validating what it returns.

The user's file provides a factory (``path/to/file.py:factory``) that returns the cell,
its inputs and optionally h*, h0, a loss and a tolerance (:data:`FACTORY_HELP`). The file
is executed as Python code (imported, without writing bytecode beside it) and the
factory called; :func:`build_from_factory` makes the problem and the cotangent from it.

A factory's result of the wrong form is a :class:`~gradscope.cli_options.UsageError`
(exit 2); a model that cannot be checked — the file or the factory raised or called
``sys.exit``, the model failed on the state, NaN or inf in the factory's tensors, in
F(h*), in the loss's gradient or in a product with the Jacobians at h* — is a
:class:`~gradscope.cli_options.ModelError` (exit 3), raised before any spectral
computation sees the NaN.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ._checks import all_finite
from .cli_options import ModelError, UsageError, describe
from .fixed_point import FixedPointResult, find_fixed_point
from .operators import jacobian_transpose, param_vjp
from .problem import FixedPointProblem

__all__ = ["FACTORY_HELP", "Built", "build_from_factory", "load_factory"]

FACTORY_HELP = (
    "the factory must return a dict with 'cell' (an nn.Module whose forward(h, *inputs) "
    "returns the next h, or a function fn(params, h, *inputs) together with 'params', a "
    "dict of parameter tensors) and 'inputs' (a tensor or a tuple of tensors), and optionally "
    "'h_star' (the equilibrium; found with gradscope.find_fixed_point if absent), 'h0' "
    "(the initial state), 'loss' (a callable loss(h_star) -> scalar; a random cotangent "
    "seeded by --seed is used if absent) and 'rtol' (the fixed-point residual above which "
    "h_star is flagged); or a tuple (cell, inputs[, h_star[, loss]])"
)


@dataclass(frozen=True)
class Built:
    """What the user's factory made.

    Attributes:
        problem: the equilibrium (h* as given or found; not judged: see ``problem.converged``).
        cotangent: g = ∂ℓ/∂h* of the factory's loss, or a seeded random one.
        source: where the cotangent came from, in words.
        found: the equilibrium search, when the factory gave no h*.

    """

    problem: FixedPointProblem
    cotangent: torch.Tensor
    source: str
    found: FixedPointResult | None


def load_factory(target: str):
    """Import ``path/to/file.py:factory`` (executing the file) and return the callable.

    No bytecode is written (no ``__pycache__`` beside the user's file).

    Returns:
        The factory.

    Raises:
        UsageError: no such file, not a Python file, no such callable in it.
        ModelError: importing the file raised or called ``sys.exit`` (any code).

    """
    if ":" not in target:
        raise UsageError(f"{target!r}: expected path/to/file.py:factory")
    path_text, name = target.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"gradscope_user_{path.stem}", path)
    if spec is None or spec.loader is None:  # no loader for the suffix (not a .py file)
        raise UsageError(f"{path}: not a Python file; expected path/to/file.py:factory")
    module = importlib.util.module_from_spec(spec)
    dont_write_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ beside the user's file
    try:
        spec.loader.exec_module(module)
    except SystemExit as error:  # sys.exit(0) must not pass a CI step silently
        raise ModelError(
            f"{path}: importing it called sys.exit({error.code!r}); a factory file must "
            "define the factory, not exit"
        ) from error
    except Exception as error:
        raise ModelError(f"{path}: importing it failed with {describe(error)}") from error
    finally:
        sys.dont_write_bytecode = dont_write_bytecode
    factory = getattr(module, name, None)
    if factory is None:
        public = sorted(
            n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))
        )
        raise UsageError(f"{path} has no {name!r}; callables there: {public}")
    if not callable(factory):
        raise UsageError(f"{path}:{name} is a {type(factory).__name__}, not a callable factory")
    return factory


def build_from_factory(factory, seed: int = 0) -> Built:
    """Call the user's factory and make the problem and the cotangent (seeded by ``seed``).

    Returns:
        The problem, the cotangent and the equilibrium search (if one was run).

    Raises:
        UsageError: the factory's result is not of the documented form.
        ModelError: the factory raised or exited, its tensors hold NaN or inf, the model
            fails on the state, or F(h*), the loss's gradient or a product with the
            Jacobians at h* is not finite.

    """
    made = _made(factory)
    cell, params = made["cell"], made.get("params")
    step = _step(cell, params)
    inputs = _inputs(made["inputs"])
    loss = made.get("loss")
    if loss is not None and not callable(loss):
        raise UsageError(f"'loss' is a {type(loss).__name__}, not a callable; {FACTORY_HELP}")
    _check_finite_data(made, cell, params, inputs)
    h_star, found = made.get("h_star"), None
    if h_star is None:
        found = _find_fixed_point(step, inputs, made.get("h0"))
        h_star = found.value
        if not all_finite(h_star):
            raise ModelError(
                f"the equilibrium search (find_fixed_point) reached NaN or inf after "
                f"{found.steps} steps; give 'h_star' or a better 'h0' in the factory, or check "
                "that F is contractive"
            )
    try:
        if isinstance(cell, nn.Module):
            problem = FixedPointProblem.from_module(
                cell, h_star, *inputs, rtol=made.get("rtol"), check=False
            )
        else:
            assert params is not None  # _step requires a non-empty dict with a function cell
            problem = FixedPointProblem.from_function(
                cell, params, h_star, *inputs, rtol=made.get("rtol"), check=False
            )
    except (TypeError, ValueError, RuntimeError) as error:
        raise ModelError(f"the factory's model does not run: {error}") from error
    if not math.isfinite(problem.residual.max_absolute):
        at = "the equilibrium found" if found is not None else "the factory's h_star"
        raise ModelError(f"the model's output F(h*) contains NaN or inf (h* = {at})")
    g, source = _cotangent(loss, h_star, seed)
    _check_finite_derivatives(problem, g)
    return Built(problem, g, source, found)


def _check_finite_data(made: dict, cell, params, inputs: tuple[torch.Tensor, ...]) -> None:
    """NaN or inf in the factory's inputs, parameters, buffers, h_star or h0: a ModelError."""
    named: list[tuple[str, object]] = [(f"inputs[{i}]", x) for i, x in enumerate(inputs)]
    if isinstance(cell, nn.Module):
        named += [(f"parameter {n!r}", p) for n, p in cell.named_parameters()]
        named += [(f"buffer {n!r}", b) for n, b in cell.named_buffers()]
    else:
        named += [(f"parameter {n!r}", p) for n, p in params.items()]
    named += [(key, made[key]) for key in ("h_star", "h0") if made.get(key) is not None]
    for name, value in named:
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"the factory's {name} is a {type(value).__name__}, not a tensor")
        if not all_finite(value.detach()):
            raise ModelError(f"the factory's {name} contains NaN or inf")


def _check_finite_derivatives(problem: FixedPointProblem, g: torch.Tensor) -> None:
    """Jᵀg, Jg and F_θᵀg at h*: NaN or inf in any is a ModelError.

    Spectral methods must never see a non-finite Jacobian (an SVD then fails, and LAPACK
    may abort the process). Forward mode (Jg) can be NaN where reverse mode is not: the
    derivative of sqrt at 0 is inf, and inf · 0 = NaN.

    Raises:
        ModelError: a product is not finite, or differentiating F failed.

    """
    JT = jacobian_transpose(problem)
    try:
        products = {"Jᵀg": JT(g), "Jg": JT.T(g)}
        grads, _ = param_vjp(problem, g)
    except RuntimeError as error:
        raise ModelError(f"differentiating the model at h* failed: {error}") from error
    products.update({f"F_θᵀg for {n!r}": v for n, v in grads.items()})
    bad = [name for name, value in products.items() if not all_finite(value)]
    if bad:
        raise ModelError(
            f"the model's derivatives at h* contain NaN or inf ({', '.join(bad)}, with g the "
            "cotangent; J = ∂F/∂h, F_θ = ∂F/∂θ)"
        )


def _made(factory) -> dict:
    """The factory's result as a dict with at least 'cell' and 'inputs'."""
    try:
        made = factory()
    except SystemExit as error:  # sys.exit(0) must not pass a CI step silently
        raise ModelError(
            f"the factory called sys.exit({error.code!r}); it must return the model"
        ) from error
    except Exception as error:
        raise ModelError(f"the factory raised {describe(error)}") from error
    if isinstance(made, tuple):
        keys = ("cell", "inputs", "h_star", "loss")
        if not 2 <= len(made) <= 4:
            raise UsageError(f"the factory returned a tuple of {len(made)} items; {FACTORY_HELP}")
        made = dict(zip(keys, made))
    if not isinstance(made, dict) or "cell" not in made or "inputs" not in made:
        raise UsageError(f"the factory returned {type(made).__name__}; {FACTORY_HELP}")
    return made


def _step(cell, params):
    """The map ``(h, *inputs) ↦ next h`` of a module cell, or of a function cell and its params."""
    if isinstance(cell, nn.Module):
        if params is not None:
            raise UsageError(
                f"'params' goes with a function cell, not an nn.Module; {FACTORY_HELP}"
            )
        return cell
    if callable(cell):
        if not isinstance(params, dict) or not params:
            raise UsageError(
                f"a function cell needs 'params', a non-empty dict of tensors; {FACTORY_HELP}"
            )
        return functools.partial(cell, params)  # (h, *inputs) ↦ cell(params, h, *inputs)
    raise UsageError(
        f"'cell' is a {type(cell).__name__}, not an nn.Module or a function; {FACTORY_HELP}"
    )


def _inputs(inputs) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    elif isinstance(inputs, (tuple, list)):
        inputs = tuple(inputs)
    else:
        raise UsageError(f"'inputs' is a {type(inputs).__name__}; {FACTORY_HELP}")
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise UsageError(f"'inputs' must be tensors; {FACTORY_HELP}")
    return inputs


def _cotangent(loss, h_star: torch.Tensor, seed: int) -> tuple[torch.Tensor, str]:
    """G = ∂ℓ/∂h* of the factory's loss, or a random cotangent seeded by ``seed``."""
    if loss is None:
        g = torch.randn(
            h_star.shape, generator=torch.Generator().manual_seed(seed), dtype=h_star.dtype
        )
        return g.to(h_star.device), f"a random cotangent, seed {seed} (the factory gave no loss)"
    h = h_star.detach().requires_grad_(True)
    try:
        value = loss(h)
    except Exception as error:
        raise ModelError(f"the factory's loss raised {describe(error)}") from error
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.requires_grad:
        raise UsageError("'loss' must return a scalar tensor that depends on h_star")
    (g,) = torch.autograd.grad(value, h)
    if not all_finite(g):
        raise ModelError(
            f"the gradient of the factory's loss at h* contains NaN or inf (loss = {value.item()})"
        )
    return g, "the factory's loss"


def _find_fixed_point(cell, inputs, h0) -> FixedPointResult:
    """The equilibrium search; whether it converged is read from the result (no warning)."""
    try:
        return find_fixed_point(
            cell,
            *inputs,
            h0=h0,
            rtol=1e-8 if inputs[0].dtype == torch.float64 else 1e-5,
            max_steps=500,
            warn=False,
        )
    except (TypeError, ValueError, RuntimeError) as error:
        raise ModelError(f"finding the equilibrium failed: {error}") from error
