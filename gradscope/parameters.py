"""Which parameters of a module or function a problem differentiates, checked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ._checks import fail

__all__ = ["check_params_mapping", "chosen_parameters"]


def chosen_parameters(
    call: str, module: nn.Module, params: Iterable[str] | None
) -> dict[str, torch.Tensor]:
    """The parameters of ``module`` to differentiate: those named, or all trainable."""
    named = dict(module.named_parameters())
    if params is None:
        return {n: p for n, p in named.items() if p.requires_grad}
    if isinstance(params, str):
        params = [params]
    if not hasattr(params, "__iter__"):
        fail(call, f"params={params!r}; expected a list of parameter names.", TypeError)
    chosen: dict[str, torch.Tensor] = {}
    for n in params:
        if n not in named:
            fail(call, f"parameter {n!r} does not exist; expected one of {sorted(named)}.")
        if not named[n].requires_grad:
            fail(
                call,
                f"parameter {n!r} does not require grad; expected a trainable "
                "parameter. Call .requires_grad_() on it or leave it out of params.",
            )
        chosen[n] = named[n]
    return chosen


def check_params_mapping(call: str, params: object) -> None:
    """Raise a TypeError naming ``call`` unless ``params`` is a mapping of names to tensors."""
    if not isinstance(params, Mapping):
        fail(
            call,
            f'params is a {type(params).__name__}; expected a dict of tensors, {{"name": tensor}}.',
            TypeError,
        )
