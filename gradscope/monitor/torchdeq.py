"""The TorchDEQ 0.1.0 adapter: watch a ``z_out, info = deq(f, z0)`` module.

TorchDEQ does not return its h* nor F's parameters apart from the closure ``f``: at a
scheduled step the adapter re-solves ``h* = f(h*)`` from TorchDEQ's ``z_out[-1]`` and
makes ``f`` a function of the cell's parameters (``functional_call`` on a holder module
whose forward runs the closure), so that the monitor can build a
:class:`~gradscope.FixedPointProblem` from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..estimators import Estimator
from ..fixed_point import find_fixed_point
from ..parametrized import functional_call

__all__ = ["ClosureCell", "register_torchdeq", "torchdeq_stats"]

#: TorchDEQ's forward statistics recorded by the monitor (means over the batch).
TORCHDEQ_STATS = ("abs_lowest", "rel_lowest", "nstep")


class ClosureCell(nn.Module):
    """Holds a cell so that ``functional_call`` swaps its parameters while a closure runs."""

    def __init__(self, cell: nn.Module, func: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.cell = cell
        self.func = func

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The closure at ``h`` (it calls the held cell)."""
        return self.func(h)


def torchdeq_stats(info: Mapping) -> dict[str, float]:
    """TorchDEQ's forward statistics from its ``info`` dict, averaged over the batch."""
    return {
        key: float(torch.as_tensor(info[key]).float().mean())
        for key in TORCHDEQ_STATS
        if key in info
    }


def register_torchdeq(
    deq: nn.Module,
    cell: nn.Module,
    *,
    due: Callable[[str], int | None],
    observe: Callable[..., object],
    name: str,
    training_estimator: Estimator | None,
    rtol: float,
    max_steps: int,
) -> Callable[[], None]:
    """Hook ``deq`` so that each scheduled training forward is observed in its backward.

    Args:
        deq: the TorchDEQ module (``z_out, info = deq(f, z0)``).
        cell: the module holding F's parameters (called inside ``f``).
        due: ``due(name)`` counts a step of layer ``name`` and returns its number when it
            is scheduled, else None.
        observe: the monitor's :meth:`~gradscope.GradientMonitor.observe`.
        name: the layer's label.
        training_estimator: the estimator the training uses.
        rtol: tolerance of the re-solve of h*.
        max_steps: step budget of the re-solve.

    Returns:
        A function that removes the hook.

    """

    def forward_hook(module, args, kwargs, output) -> None:
        if not module.training or not torch.is_grad_enabled():
            return
        step = due(name)
        if step is None:
            return
        func = args[0] if args else kwargs["func"]
        z_out, info = output
        z = z_out[-1]
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            return
        fn, prepare = _functional(cell, func, z.detach(), rtol, max_steps)
        stats = torchdeq_stats(info)

        def hook(g: torch.Tensor) -> None:
            observe(
                fn,
                None,
                cotangent=g,
                step=step,
                name=name,
                training_estimator=training_estimator,
                prepare=prepare,
                torchdeq_stats=stats,
            )

        z.register_hook(hook)

    handle = deq.register_forward_hook(forward_hook, with_kwargs=True)
    return handle.remove


def _functional(cell: nn.Module, func, z0: torch.Tensor, rtol: float, max_steps: int):
    """``fn(params, h)`` for the closure, and ``prepare()`` that re-solves h* from ``z0``."""
    holder = ClosureCell(cell, func)
    names = [n for n, p in cell.named_parameters() if p.requires_grad]

    def fn(params, h):
        # gradscope's functional_call: TorchDEQ-normed weights recomputed from params
        return functional_call(holder, {f"cell.{n}": p for n, p in params.items()}, (h,))

    def prepare():
        fp = find_fixed_point(func, h0=z0, rtol=rtol, max_steps=max_steps, warn=False)
        named = dict(cell.named_parameters())
        return fp, {n: named[n] for n in names}

    return fn, prepare
