r"""The parameter Jacobian F_θ at h*: its extreme singular values σ_max, σ_min.

Theorem 1's threshold σ_min²/σ_max (:ref:`theory-theorem1`) needs them: densely for small
problems, else by Lanczos on ``F_θ F_θᵀ`` (a parameter VJP and JVP a step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._checks import fail
from ..layout import SampleLayout
from ..operators import param_jacobian_dense, param_jvp, param_vjp
from ..operators.jacobian import flatten_params
from ..problem import FixedPointProblem, check_problem
from ..spectral import Lanczos
from ..spectral.krylov import flat_map, lanczos, sqrt_bound, start_block

__all__ = ["param_singular_values", "require_params"]

StateMap = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------- F_θ
def require_params(call: str, problem: object) -> None:
    """Raise unless ``problem`` is a problem with at least one parameter entry."""
    problem = check_problem(call, problem)
    if not problem.params or sum(t.numel() for t in problem.params.values()) == 0:
        fail(
            call,
            "the problem has no parameters; expected at least one parameter tensor θ. "
            "Pass params={...} to FixedPointProblem.from_function or trainable parameters "
            "to from_module.",
        )


def _lanczos_sigma(apply: StateMap, like: torch.Tensor, max_steps: int, which: str) -> float:
    """√ of the extreme eigenvalue of a symmetric PSD map on states (one Lanczos run)."""
    layout = SampleLayout(like.shape, per_sample=False)
    theta, residual, _, _ = lanczos(
        flat_map(apply, layout), start_block(layout, like, 0), Lanczos(max_steps=max_steps), which
    )
    return float(sqrt_bound(theta, residual)[0][0])


def param_singular_values(
    problem: FixedPointProblem, *, dense: bool | None = None, max_steps: int = 100
) -> tuple[float, float]:
    r"""``(σ_max, σ_min)`` of ``F_θ = ∂F/∂θ`` at h* (d × p), σ_min the d-th singular value.

    ``σ_min = 0`` when p < d (more state entries than parameters) or F_θ is
    rank-deficient; Theorem 1 is then vacuous. Dense (small d·p) or Lanczos on
    ``F_θ F_θᵀ`` (one VJP and one parameter-JVP per step).

    Args:
        problem: the equilibrium (with parameters).
        dense: materialise F_θ (default when d ≤ 256 and d·p ≤ 10⁶).
        max_steps: Lanczos steps for the matrix-free path.

    Returns:
        ``(σ_max, σ_min)``.

    Raises:
        ValueError: the problem has no parameters.

    Example:
        >>> import torch, gradscope as gs
        >>> fn = lambda p, h, x: p["W"] @ h + p["b"] + x
        >>> p = {"W": torch.zeros(2, 2, dtype=torch.float64), "b": torch.zeros(2, dtype=torch.float64)}
        >>> x = torch.ones(2, dtype=torch.float64)
        >>> smax, smin = gs.theory.param_singular_values(gs.FixedPointProblem.from_function(fn, p, x, x))
        >>> round(smax, 10), round(smin, 10)  # F_θ = [h*ᵀ ⊗ I, I]: σ² = 1 + ‖h*‖² = 3
        (1.7320508076, 1.7320508076)

    """
    require_params("param_singular_values", problem)
    d = problem.h_star.numel()
    p = sum(t.numel() for t in problem.params.values())
    dense = (d <= 256 and d * p <= 10**6) if dense is None else dense
    if dense:
        s = torch.linalg.svdvals(param_jacobian_dense(problem))
        return float(s[0]), float(s[d - 1]) if p >= d else 0.0

    def gram(v: torch.Tensor) -> torch.Tensor:  # F_θ F_θᵀ v
        return param_jvp(problem, flatten_params(param_vjp(problem, v)[0]))

    smax = _lanczos_sigma(gram, problem.h_star, max_steps, "max")
    if p < d:
        return smax, 0.0
    return smax, _lanczos_sigma(gram, problem.h_star, max_steps, "min")
