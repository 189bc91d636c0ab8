"""Counting the memory autograd keeps for backward."""

from __future__ import annotations

import torch


class GraphMeter:
    """Adds up the bytes autograd saves for backward, one count per storage.

    Use its :meth:`pack` as the pack hook of
    :func:`torch.autograd.graph.saved_tensors_hooks`; it returns the tensor unchanged.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """Count ``t``'s storage once and hand back a detached alias of ``t``.

        Detached, because a saved output packed as itself would hold its own ``grad_fn``:
        a reference cycle through autograd's C++ graph that Python's garbage collector
        cannot break, so every graph built under the hooks would leak.
        """
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += storage.nbytes()
        return t.detach()

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        """The context manager that routes saved tensors through :meth:`pack`."""
        return torch.autograd.graph.saved_tensors_hooks(self.pack, _identity)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t
