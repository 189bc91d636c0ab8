r"""How a state is laid out: samples × entries.

A state of two or more dimensions is batched: dimension 0 indexes the samples. A 0-D or
1-D state is a single sample. When the samples are independent (the Jacobian is
block-diagonal, see :ref:`theory-setting`), solvers and spectral methods work on one row
per sample; otherwise the whole state is one row. :class:`~gradscope.layout.SampleLayout` is the one place
that flattens a state to those rows and back.

Example:
    >>> import torch
    >>> from gradscope.layout import SampleLayout
    >>> layout = SampleLayout(torch.Size([4, 3]), per_sample=True)
    >>> layout.rows, layout.n
    (4, 3)
    >>> layout.norms(torch.ones(4, 3))
    tensor([1.7321, 1.7321, 1.7321, 1.7321])

"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["SampleLayout", "samples_independent"]


@dataclass(frozen=True)
class SampleLayout:
    """Rows of a state: one per sample (``per_sample`` and batched) or a single row.

    Args:
        shape: the shape of the state.
        per_sample: one row per sample along dimension 0 (ignored for 0-D and 1-D states).

    Example:
        >>> import torch
        >>> from gradscope.layout import SampleLayout
        >>> layout = SampleLayout(torch.Size([4, 3]), per_sample=True)
        >>> x = torch.ones(4, 3, dtype=torch.float64)
        >>> layout.rows, layout.n, layout.flat(x).sum(dim=1).tolist()
        (4, 3, [3.0, 3.0, 3.0, 3.0])

    """

    shape: torch.Size
    per_sample: bool

    @property
    def by_sample(self) -> bool:
        """Whether the rows are the samples (``per_sample`` and a batched state)."""
        return self.per_sample and len(self.shape) >= 2

    @property
    def rows(self) -> int:
        """How many rows there are (the samples, or 1)."""
        return self.shape[0] if self.by_sample else 1

    @property
    def n(self) -> int:
        """Entries per row."""
        return self.shape.numel() // max(self.rows, 1) if self.rows else 0

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """View ``x`` (shaped like the state) as ``(rows, n)``."""
        return x.reshape(self.rows, -1)

    def unflat(self, X: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`flat`."""
        return X.reshape(self.shape)

    def norms(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean norm per row, shape ``(rows,)``."""
        return torch.linalg.vector_norm(self.flat(x), dim=1)

    def expand(self, scalars: torch.Tensor) -> torch.Tensor:
        """Per-row scalars broadcastable against a state."""
        if self.by_sample:
            return scalars.reshape((-1,) + (1,) * (len(self.shape) - 1))
        return scalars.reshape(())


def samples_independent(vjp: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor) -> bool:
    r"""Whether the samples of a batched state are independent (J block-diagonal).

    J is block-diagonal over samples exactly when it commutes with every per-sample
    scaling ``D = diag(d_s I)``. Two VJPs test that with a random probe v and random
    scalars d: ``Jᵀ(Dv) − D Jᵀv = Σ_i (d_i − d_j) J_{ij}ᵀ v_i`` on sample j, which involves
    every pair of samples in both directions (a coupling of sample 0 into the others,
    or of the others into sample 0, or a ``cumsum`` over the batch). It must vanish to
    ``10³·eps`` of the dtype relative to the products' scale. BatchNorm in train mode,
    attention across the batch and similar layers couple samples. The probe uses a
    private generator: the global RNG is untouched.

    Args:
        vjp: ``v ↦ Jᵀv``.
        like: a state (its shape, dtype and device).

    Returns:
        ``True`` for a single sample or an unbatched state.

    Example:
        >>> import torch
        >>> from gradscope.layout import samples_independent
        >>> samples_independent(lambda v: 2 * v, torch.zeros(4, 3))
        True
        >>> samples_independent(lambda v: v.flip(0).cumsum(0).flip(0), torch.zeros(4, 3))
        False

    """
    if like.dim() < 2 or like.shape[0] == 1:
        return True
    generator = torch.Generator(device=like.device).manual_seed(0)
    v = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    d = torch.rand(like.shape[0], generator=generator, dtype=like.dtype, device=like.device) + 0.5
    D = d.reshape((-1,) + (1,) * (like.dim() - 1))
    scaled_first = vjp(D * v)
    scaled_after = D * vjp(v)
    leak = torch.linalg.vector_norm(scaled_first - scaled_after)
    scale = torch.linalg.vector_norm(scaled_first) + torch.linalg.vector_norm(scaled_after)
    scale = scale + torch.linalg.vector_norm(v)
    return bool(leak <= 1e3 * torch.finfo(like.dtype).eps * scale)
