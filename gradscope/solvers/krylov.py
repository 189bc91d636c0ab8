r"""The batched Krylov core shared by GMRES and the spectral estimates: CGS2 orthogonalisation.

One Krylov basis per row: ``basis`` is ``(R, j, n)`` (j orthonormal vectors of length n
for each of R rows) and ``w`` is ``(R, n)``. Classical Gram–Schmidt applied twice (CGS2)
is as stable as modified Gram–Schmidt but runs as batched matrix products; ``w`` is
used as a row ``(R, 1, n)`` so that both products read the basis in its stored layout
(several times faster on CPU than the column form for per-sample bases).

Example:
    >>> import torch
    >>> from gradscope.solvers.krylov import cgs2
    >>> basis = torch.eye(3, dtype=torch.float64)[None, :2]  # e₁, e₂ for one row
    >>> w, h = cgs2(basis, torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64))
    >>> w.tolist(), h.tolist()
    ([[0.0, 0.0, 3.0]], [[1.0, 2.0]])

"""

from __future__ import annotations

import torch

__all__ = ["cgs2", "gram_schmidt"]


def gram_schmidt(
    basis: torch.Tensor, w: torch.Tensor, passes: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Orthogonalise ``w`` against ``basis`` per row: ``passes`` times ``w ← (I − VVᵀ)w``.

    Args:
        basis: ``(R, j, n)``, orthonormal rows ``V``.
        w: ``(R, n)``.
        passes: 2 is CGS2 (GMRES, Arnoldi); 1 a single re-orthogonalisation (Lanczos).

    Returns:
        ``(w', h)``: the orthogonalised ``(R, n)`` vector and the coefficients ``Vᵀw`` of
        every pass summed, ``(R, j)`` (for Arnoldi, the new Hessenberg column).

    """
    row = w.unsqueeze(1)  # (R, 1, n)
    VT = basis.transpose(1, 2)  # (R, n, j), a view: no copy
    total = None
    for _ in range(passes):
        h = torch.bmm(row, VT)  # (R, 1, j)
        row = torch.baddbmm(row, h, basis, alpha=-1)
        total = h if total is None else total + h
    assert total is not None
    return row.squeeze(1), total.squeeze(1)


def cgs2(basis: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Classical Gram–Schmidt applied twice: :func:`gram_schmidt` with two passes.

    Returns:
        ``(w', h)`` as :func:`gram_schmidt` gives them.

    """
    return gram_schmidt(basis, w, passes=2)
