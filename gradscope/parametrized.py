r"""Parametrized weights: calling a module on swapped parameters, with nothing left behind.

:meth:`FixedPointProblem.from_module <gradscope.FixedPointProblem.from_module>` runs the
cell through :func:`torch.func.functional_call`, which swaps the parameters and buffers
for gradscope's detached aliases. A weight that is *derived* from parameters needs care:

* :mod:`torch.nn.utils.parametrize` (``torch.nn.utils.parametrizations.weight_norm``,
  ``spectral_norm``, ``orthogonal``) recomputes ``weight`` from
  ``parametrizations.weight.original*`` inside every forward: the swap reaches it.
* the classic hook :func:`torch.nn.utils.weight_norm` recomputes ``weight`` from
  ``weight_g`` and ``weight_v`` in a forward pre-hook, and *stores* it as a plain
  attribute of the module: the swap reaches it, but the module is left holding a tensor
  computed from gradscope's aliases.
* TorchDEQ's ``apply_norm`` (weight norm, spectral norm) stores ``weight`` as a plain
  attribute that only ``reset_norm`` recomputes. The forward reads that cached tensor,
  so a swap of ``weight_g``/``weight_v`` does not reach it: autograd finds no path to
  them and their gradients would come out as zeros.

:func:`functional_call` handles all three: it recomputes each TorchDEQ-normed weight
from the swapped parameters, with the norm's own ``compute_weight`` (spectral norm
without a power iteration: its ``u``, ``v`` buffers are used as they are, as in
the forward after ``reset_norm``), passes it in for the call, and afterwards puts every
plain tensor attribute of every submodule back as it was (the same objects). TorchDEQ
is recognised by the ``_deq_norm`` attribute that ``apply_norm`` sets; torchdeq is never
imported.

A parameter that F still does not reach gets a zero gradient and is named in the
estimate's ``unreached`` with an :class:`~gradscope.UnreachedParameterWarning`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .exceptions import UnreachedParameterWarning

__all__ = ["functional_call", "normed_weights", "warn_unreached"]


def functional_call(
    module: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """:func:`torch.func.functional_call`, also for TorchDEQ-normed weights, without side effects.

    Each weight that TorchDEQ's ``apply_norm`` caches is recomputed from ``tensors``
    (:func:`normed_weights`) and swapped in for the call, unless ``tensors`` names it
    already; every plain tensor attribute of the module and its submodules (a cached
    weight, one that a forward hook stores) is the same object after the call as before.

    Args:
        module: the module to call.
        tensors: parameters and buffers to use, keyed like ``named_parameters()`` and
            ``named_buffers()``.
        args: positional arguments of the forward.
        kwargs: keyword arguments of the forward.

    Returns:
        The module's output.

    Example:
        >>> import torch
        >>> from gradscope.parametrized import functional_call
        >>> cell = torch.nn.Linear(2, 2)
        >>> w = torch.eye(2)
        >>> out = functional_call(cell, {"weight": w, "bias": torch.zeros(2)}, (torch.ones(2),))
        >>> out.tolist()
        [1.0, 1.0]

    """
    swapped = {**normed_weights(module, tensors), **tensors}
    args = args if isinstance(args, tuple) else (args,)
    with _attributes_restored(module):
        return torch.func.functional_call(module, swapped, args, dict(kwargs or {}))


def normed_weights(
    module: nn.Module, tensors: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The weights of TorchDEQ-normed submodules, recomputed from ``tensors``.

    A submodule with a ``_deq_norm`` (set by ``torchdeq.norm.apply_norm``) holds its
    normalised weights as plain attributes that the forward reads. They are recomputed
    here with the norm's ``compute_weight``, reading each tensor it asks for from
    ``tensors`` when named there (``prefix.weight_g``, ``prefix.weight_v``, …) and from
    the submodule otherwise. TorchDEQ's spectral norm does no power iteration: its
    ``u`` and ``v`` are used as stored. Another registered norm (``register_norm``) is
    called as ``norm(view)`` on such a view and the tensors it sets are taken. Nothing
    of the module changes (a registered norm that updates a buffer in place updates
    the tensor passed in ``tensors``, when there is one).

    Args:
        module: the module.
        tensors: the parameters and buffers to compute from, keyed like
            ``named_parameters()`` and ``named_buffers()``.

    Returns:
        ``{"prefix.weight": tensor}`` for every normed weight (empty without TorchDEQ norms).

    """
    found: dict[str, torch.Tensor] = {}
    for prefix, sub in module.named_modules():
        norm = vars(sub).get("_deq_norm")
        if norm is None:
            continue
        dot = f"{prefix}." if prefix else ""
        view = _SwappedView(sub, dot, tensors)
        kind = _torchdeq_kind(norm)
        if kind is None:
            norm(view)
            computed = view.written()
        else:
            computed = {}
            for name, dim in zip(norm.names, norm.dims):
                if kind == "SpectralNorm":
                    computed[name] = norm.compute_weight(view, False, name, dim)
                else:
                    computed[name] = norm.compute_weight(view, name, dim)
        found.update({dot + name: w for name, w in computed.items()})
    return found


def warn_unreached(call: str, names: tuple[str, ...], stacklevel: int = 3) -> None:
    """Issue an :class:`~gradscope.UnreachedParameterWarning` that names the unreached parameters."""
    if not names:
        return
    warnings.warn(
        f"gradscope.{call}: F does not reach {len(names)} parameter(s) to be differentiated: "
        f"{list(names)}. Autograd finds no path from F's output to them, so their gradients "
        "are reported as zeros (listed in the estimate's .unreached). If F should use them, "
        "the module reads a tensor derived from them outside the swapped parameters (a "
        "cached weight, a parametrization cache); gradscope recomputes the weights of "
        "torch.nn.utils.parametrize, torch.nn.utils.weight_norm and TorchDEQ's apply_norm. "
        "Otherwise leave them out (from_module(params=[...])) or set requires_grad=False.",
        UnreachedParameterWarning,
        stacklevel=stacklevel,
    )


def _torchdeq_kind(norm: object) -> str | None:
    """``"WeightNorm"`` or ``"SpectralNorm"`` for TorchDEQ's norms (and subclasses), else None."""
    for cls in type(norm).__mro__:
        if cls.__module__.split(".")[0] == "torchdeq" and cls.__name__ in (
            "WeightNorm",
            "SpectralNorm",
        ):
            return cls.__name__
    return None


class _SwappedView:
    """A submodule as a norm's ``compute_weight`` sees it, with the swapped tensors in place.

    Reads ``name`` from ``tensors[prefix + name]`` when present, else from the
    submodule; writes stay on the view.
    """

    def __init__(self, module: nn.Module, prefix: str, tensors: Mapping[str, torch.Tensor]) -> None:
        self.__dict__["_gradscope_view"] = (module, prefix, tensors)

    def __getattr__(self, name: str) -> Any:
        module, prefix, tensors = self.__dict__["_gradscope_view"]
        if prefix + name in tensors:
            return tensors[prefix + name]
        return getattr(module, name)

    def written(self) -> dict[str, torch.Tensor]:
        """The tensors a norm's ``__call__`` set on the view."""
        return {
            n: v
            for n, v in self.__dict__.items()
            if n != "_gradscope_view" and isinstance(v, torch.Tensor)
        }


@contextlib.contextmanager
def _attributes_restored(module: nn.Module) -> Iterator[None]:
    """Put back every plain tensor attribute of ``module`` and its submodules on exit.

    The tensors a forward stores on a module (the classic weight-norm hook's ``weight``)
    would otherwise keep gradscope's aliases and their graph alive.
    """
    saved = [
        (sub, {n: v for n, v in vars(sub).items() if isinstance(v, torch.Tensor)})
        for sub in module.modules()
    ]
    try:
        yield
    finally:
        for sub, tensors in saved:
            attrs = vars(sub)
            for n in [n for n, v in attrs.items() if isinstance(v, torch.Tensor)]:
                if n not in tensors:
                    del attrs[n]
            for n, v in tensors.items():
                if attrs.get(n) is not v:
                    attrs[n] = v
