r"""Solve ``A x = b`` with a :class:`~gradscope.solvers.Solver` and certify the result.

The certificate is the **true** residual ``‖b − Ax‖`` of the returned x, recomputed
after the iteration (never the solver's running estimate): a solve is
:attr:`~gradscope.Status.SUCCESS` exactly when every row meets
``‖b − Ax‖ ≤ max(rtol‖b‖, atol)`` and x is finite (:ref:`theory-exact-gradient`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from .._checks import (
    check_bool,
    check_like,
    fail,
    tf32_hint,
)
from ..operators import Counted, LinearOperator
from ..status import Status, report
from .base import Solution, Solver, default_solver_rtol
from .gmres import GMRES

__all__ = ["describe_failure", "linear_solve", "solve"]


def linear_solve(
    A: LinearOperator,
    b: torch.Tensor,
    solver: Solver | None = None,
    *,
    per_sample: bool | None = None,
    x0: torch.Tensor | None = None,
) -> Solution:
    r"""Solve ``A x = b`` with ``solver`` and certify the result.

    Args:
        A: the operator (e.g. ``JT.identity() - JT`` for the adjoint system).
        b: right-hand side, shaped like A's vectors.
        solver: a solver object (default :class:`~gradscope.solvers.GMRES`).
        per_sample: solve dimension 0's samples independently; ``None`` (default) follows
            the solver's ``per_sample``, then ``A.independent_samples``.
        x0: initial guess (default zeros).

    Returns:
        A :class:`~gradscope.solvers.Solution`; a :class:`~gradscope.ConvergenceWarning`
        is issued when it did not converge (``strict=True`` raises
        :class:`~gradscope.ConvergenceError`).

    Raises:
        TypeError: ``A`` is not an operator or ``solver`` not a solver.
        ValueError: ``b`` or ``x0`` does not match A's vectors.

    Example:
        >>> import torch
        >>> from gradscope.operators import FunctionOperator
        >>> from gradscope.solvers import GMRES, linear_solve
        >>> M = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
        >>> A = FunctionOperator(lambda v: M @ v, torch.zeros(2, dtype=torch.float64), "M")
        >>> sol = linear_solve(A, torch.ones(2, dtype=torch.float64), GMRES(rtol=1e-12))
        >>> sol.status.name, torch.allclose(M @ sol.value, torch.ones(2, dtype=torch.float64))
        ('SUCCESS', True)

    """
    solution = solve(A, b, solver, per_sample=per_sample, x0=x0, call="linear_solve")
    if not solution.converged:
        assert solution.solver is not None
        report(describe_failure(solution, A.name, "linear_solve"), strict=solution.solver.strict)
    return solution


def solve(
    A: LinearOperator,
    b: torch.Tensor,
    solver: Solver | None = None,
    *,
    per_sample: bool | None = None,
    x0: torch.Tensor | None = None,
    call: str = "linear_solve",
) -> Solution:
    """:func:`~gradscope.solvers.linear_solve` without the warning: the status is in the result."""
    solver = GMRES() if solver is None else solver
    if not isinstance(solver, Solver):
        fail(
            call,
            f"solver={solver!r}; expected a gradscope.solvers.Solver such as GMRES(), "
            "BiCGSTAB(), FixedPointIteration() or Dense().",
            TypeError,
        )
    if not isinstance(A, LinearOperator):
        fail(
            call,
            f"A is a {type(A).__name__}; expected a gradscope.operators.LinearOperator.",
            TypeError,
        )
    b, x0 = _checked_vectors(call, A, b, x0)
    if per_sample is not None:
        check_bool(call, "per_sample", per_sample)
    if solver.rtol is None:
        solver = dataclasses.replace(solver, rtol=default_solver_rtol(b.dtype))  # type: ignore[type-var]
    assert solver.rtol is not None
    if solver.per_sample is not None:
        per_sample = solver.per_sample
    if per_sample is None:
        per_sample = A.independent_samples
    if per_sample and not A.independent_samples and b.dim() >= 2:
        fail(
            call,
            f"{solver.name}(per_sample=True) needs independent samples, but {A.name} couples "
            "the samples (a product on one sample reaches others: BatchNorm in train mode?). "
            "Use per_sample=False or per_sample=None.",
        )
    layout = A.layout(per_sample)
    counted = Counted(A)  # this solve's products, without touching A
    start = time.perf_counter()
    b = b.detach()
    x = torch.zeros_like(b) if x0 is None else x0.detach().clone()
    it = solver.iterate(counted, b, x, layout)
    r = it.residual if it.residual is not None else b - counted(it.value)
    b_norm, r_norm = layout.norms(b), layout.norms(r)
    tol = torch.clamp(solver.rtol * b_norm, min=solver.atol)
    relative = torch.where(b_norm > 0, r_norm / b_norm.clamp_min(torch.finfo(b.dtype).tiny), r_norm)
    finite = bool(torch.isfinite(it.value).all()) and bool(torch.isfinite(r_norm).all())
    if not finite:
        status = Status.NON_FINITE
    elif bool((r_norm <= tol).all()) and it.status is not Status.LEAST_SQUARES:
        status = Status.SUCCESS
    else:
        status = it.status or Status.MAX_STEPS
    if b.is_cuda:
        torch.cuda.synchronize(b.device)
    trace = it.trace if it.trace is not None else b.new_zeros(0, layout.rows)
    return Solution(
        value=it.value,
        status=status,
        residual=float(relative.max()) if finite else math.inf,
        residual_per_sample=relative,
        steps=it.steps,
        matvecs=counted.count,
        trace=trace,
        seconds=time.perf_counter() - start,
        solver=solver,
    )


def _checked_vectors(
    call: str, A: LinearOperator, b: object, x0: object
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``b`` and ``x0`` checked against A's vectors: tensors, floating, shaped, finite.

    Returns:
        ``(b, x0)``.

    """
    b = check_like(call, "b", b, A.like, "A (its vectors)")
    if x0 is not None:
        x0 = check_like(call, "x0", x0, b, "b")
    return b, x0


def describe_failure(solution: Solution, what: str, call: str) -> str:
    """What happened to a failed solve of the system ``what``, and what to try for its solver."""
    solver = solution.solver
    assert solver is not None
    x = solution.value
    rows = solution.residual_per_sample.numel()
    n = x.numel() // max(rows, 1)
    return (
        f"gradscope.{call}: {solver.name} on {what} {solution.status.help} True relative "
        f"residual {solution.residual:.3e} (rtol={solver.rtol:g}) after {solution.steps} steps "
        f"and {solution.matvecs} products. {solver.remedy(n)}" + tf32_hint(x.is_cuda, x.dtype)
    )
