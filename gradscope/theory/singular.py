r"""Why the adjoint system ``(I − Jᵀ)u = g`` has no solution: an eigenvalue of J at 1.

The exact implicit gradient needs ``I − J`` invertible (:ref:`theory-exact-gradient`). When
an exact solve fails with a residual that will not fall, the usual reason is an eigenvalue
μ of J at (or numerically at) 1: ``J v = v`` for some v, and ``I − J`` is singular. A common
source is an invariance of F: a pre-LayerNorm residual block ``F(h) = h + G(LN(h))`` has
``J·1 = 1`` for every token, because ``LN(h + c·1) = LN(h)``. :func:`explain_singularity`
finds the eigenvalue of J closest to 1, its eigenvector (the right singular vector of
``I − J`` for its smallest singular value) and names the eigenvector's structure where it
is a simple one. Dense per-sample blocks only: for large states it says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import fail
from ..operators import jacobian_transpose
from ..problem import FixedPointProblem, check_problem

__all__ = ["Singularity", "explain_singularity"]

#: Per-sample blocks up to this size are materialised (n products and an n×n eig each).
DENSE_LIMIT = 512


@dataclass(frozen=True)
class Singularity:
    """The eigenvalue of J closest to 1 at an equilibrium, and what its eigenvector looks like.

    Attributes:
        eigenvalue: μ, the eigenvalue of J closest to 1 (over all samples).
        sample: the sample whose block holds it (``None`` when the samples couple).
        sigma_min: the smallest singular value of ``I − J`` (0 when singular).
        relative_sigma_min: ``sigma_min / ‖I − J‖₂``: below ~10⁴·eps, I − J is singular to
            working precision.
        singular: whether ``relative_sigma_min`` is below ``1e4·eps`` of the dtype.
        vector: the right singular vector v of ``I − J`` for ``sigma_min`` (``J v ≈ v``
            when singular), shaped like one sample's state (or the whole state).
        structure: the eigenvector's structure in words, or ``"no simple structure"``.

    Example:
        >>> import torch, gradscope as gs
        >>> W = torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=torch.float64)  # μ = 1 along e₁
        >>> problem = gs.FixedPointProblem.from_function(
        ...     lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=torch.float64))
        >>> s = gs.theory.explain_singularity(problem)
        >>> s.singular, round(abs(s.eigenvalue), 6), [round(abs(v), 6) for v in s.vector.tolist()]
        (True, 1.0, [1.0, 0.0])

    """

    eigenvalue: complex
    sample: int | None
    sigma_min: float
    relative_sigma_min: float
    singular: bool
    vector: torch.Tensor
    structure: str

    @property
    def message(self) -> str:
        """The finding in plain words."""
        where = "" if self.sample is None else f" (sample {self.sample})"
        head = (
            f"the eigenvalue of J closest to 1 is μ = {self.eigenvalue:.6g}{where}; "
            f"σ_min(I − J) = {self.sigma_min:.3g} ({self.relative_sigma_min:.3g} of ‖I − J‖₂)"
        )
        if not self.singular:
            return f"{head}: I − J is not singular, the exact gradient exists."
        return (
            f"{head}: I − J is singular, so the exact implicit gradient does not exist "
            f"(J v = v for v: {self.structure}). A solver can only return a residual that "
            "does not fall; change the model (break the invariance) or judge the phantom "
            "gradients without an exact reference."
        )


def explain_singularity(problem: FixedPointProblem) -> Singularity:
    """Find the eigenvalue of J closest to 1 at h* and describe its eigenvector.

    Dense: each sample's block (or the whole J when samples couple) is materialised with
    n products; for a block of more than 512 entries this raises and says so.

    Args:
        problem: the equilibrium.

    Returns:
        A :class:`Singularity`.

    Raises:
        ValueError: the blocks are too large for the dense path, or J is not finite.

    """
    call = "explain_singularity"
    problem = check_problem(call, problem)
    JT = jacobian_transpose(problem)
    layout = JT.layout()
    if layout.n > DENSE_LIMIT:
        fail(
            call,
            f"one block of J has {layout.n} rows; expected at most {DENSE_LIMIT} for the dense "
            "path. Check a smaller batch or state, or σ_min(I − J) with "
            "gradscope.spectral.smallest_singular_value.",
        )
    J = JT.T.dense(per_sample=layout.by_sample)
    J = J if layout.by_sample else J[None]
    if not bool(torch.isfinite(J).all()):
        fail(call, "J at h* is not finite (inf or NaN); expected a finite Jacobian.")
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    _, s, Vh = torch.linalg.svd(eye - J)
    block = int(s[:, -1].argmin())
    mu = torch.linalg.eigvals(J[block])
    eigenvalue = complex(mu[(mu - 1).abs().argmin()])
    sigma_min, top = float(s[block, -1]), float(s[block, 0])
    relative = sigma_min / top if top > 0 else 0.0
    vector = Vh[block, -1].reshape(
        problem.h_star.shape[1:] if layout.by_sample else problem.h_star.shape
    )
    singular = relative <= 1e4 * torch.finfo(J.dtype).eps
    return Singularity(
        eigenvalue,
        block if layout.by_sample else None,
        sigma_min,
        relative,
        singular,
        vector,
        describe(vector),
    )


def describe(v: torch.Tensor) -> str:
    """The structure of a vector in words: constant, or constant along its last dimension.

    Returns:
        A short description.

    """
    flat = v.reshape(-1)
    scale = float(torch.linalg.vector_norm(flat))
    if scale == 0:
        return "zero"
    tol = 1e-6 * scale
    if float(torch.linalg.vector_norm(flat - flat.mean())) <= tol:
        return (
            "constant in every entry — an invariance of F under adding a constant to the "
            "state, as a normalisation (LayerNorm, GroupNorm) behind a residual connection has"
        )
    if v.dim() >= 2:
        rows = v.reshape(-1, v.shape[-1])
        if float(torch.linalg.vector_norm(rows - rows.mean(dim=1, keepdim=True))) <= tol:
            return (
                "constant across the features (last dimension) of each position — the "
                "invariance of a LayerNorm over the features behind a residual connection"
            )
    return "no simple structure"
