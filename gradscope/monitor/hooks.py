"""How the monitor gets ``g = ∂ℓ/∂h*``: tensor hooks on the training graph (never altering it).

Each hook returns ``None``, so the cotangent flows on unchanged; h* and the inputs are
detached when the hook is made, so it keeps no graph alive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..layers import ImplicitLayer

__all__ = ["attach_layer", "observer_hook"]


def observer_hook(
    observe: Callable[..., object],
    cell,
    h_star: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    **observe_kwargs,
) -> Callable[[torch.Tensor], None]:
    """A tensor hook that calls ``observe(cell, h*, *inputs, cotangent=g, ...)`` on its ``g``."""
    h = h_star.detach()
    xs = tuple(x.detach() for x in inputs)

    def hook(g: torch.Tensor) -> None:
        observe(cell, h, *xs, cotangent=g, **observe_kwargs)

    return hook


def attach_layer(
    layer: ImplicitLayer,
    *,
    due: Callable[[str], int | None],
    observe: Callable[..., object],
    name: str,
) -> Callable[[], None]:
    """Observe ``layer`` at each scheduled differentiable forward, in its backward.

    Args:
        layer: the :class:`~gradscope.ImplicitLayer`.
        due: ``due(name)`` counts a step and returns its number when it is scheduled.
        observe: the monitor's :meth:`~gradscope.GradientMonitor.observe`.
        name: the layer's label.

    Returns:
        A function that removes the observer.

    """

    def observer(layer: ImplicitLayer, h_star, output, inputs) -> None:
        step = due(name)
        if step is None:
            return
        output.register_hook(
            observer_hook(
                observe,
                layer.cell,
                h_star,
                inputs,
                step=step,
                name=name,
                training_estimator=layer.estimator,
                forward=layer.last_forward,
            )
        )

    return layer.add_observer(observer)
