"""Per-sample reductions over batched states.

A state of two or more dimensions is batched: dimension 0 indexes the samples. A 0-D or
1-D state is a single sample.
"""

from __future__ import annotations

import torch


def flat(x: torch.Tensor, per_sample: bool) -> torch.Tensor:
    """View ``x`` as ``(samples, n)``: one row per sample, or a single row."""
    if per_sample and x.dim() >= 2:
        return x.reshape(x.shape[0], -1)
    return x.reshape(1, -1)


def norms(x: torch.Tensor, per_sample: bool) -> torch.Tensor:
    """Euclidean norm per sample (shape ``(samples,)``), or one norm in a 1-vector."""
    return torch.linalg.vector_norm(flat(x, per_sample), dim=1)


def dots(x: torch.Tensor, y: torch.Tensor, per_sample: bool) -> torch.Tensor:
    """Inner product per sample (shape ``(samples,)``)."""
    return (flat(x, per_sample) * flat(y, per_sample)).sum(dim=1)


def expand(scalars: torch.Tensor, like: torch.Tensor, per_sample: bool) -> torch.Tensor:
    """Broadcast per-sample scalars against a tensor shaped like ``like``."""
    if per_sample and like.dim() >= 2:
        return scalars.reshape((-1,) + (1,) * (like.dim() - 1))
    return scalars.reshape(())


def sample_count(x: torch.Tensor, per_sample: bool) -> int:
    """Number of rows :func:`flat` gives."""
    return x.shape[0] if per_sample and x.dim() >= 2 else 1
