"""Property-based checks: the linear-solve certificate and compare()'s invariances.

Each property is checked against quantities recomputed here from dense matrices and
plain tensors, never against the library's own numbers.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from spectral_cases import DT, block_matrix

import gradscope as gs


def dense_operator(M: torch.Tensor, like: torch.Tensor) -> gs.operators.LinearOperator:
    """The library's linear operator for the dense ``(N, N)`` matrix ``M``, N = like.numel().

    Vectors are shaped like ``like`` and flattened row-major before M acts on them. The
    samples are independent exactly when M is block-diagonal over them. The one place
    these tests build an operator: adapt it here if the operator API changes.
    """
    shape = like.shape
    rows = shape[0] if like.dim() >= 2 else 1
    n = like.numel() // rows
    off_diagonal = M.reshape(rows, n, rows, n).clone()
    for i in range(rows):
        off_diagonal[i, :, i, :] = 0
    return gs.operators.FunctionOperator(
        lambda v: (M @ v.reshape(-1)).reshape(shape),
        like,
        "M",
        matmat=lambda V: (V.reshape(V.shape[0], -1) @ M.T).reshape(V.shape),
        independent_samples=bool((off_diagonal == 0).all()),
    )


# ------------------------------------------------------------------ solver certificate
def _orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    return q * torch.sign(torch.diagonal(r))


def _block(n: int, family: str, log_cond: float, rho: float, g: torch.Generator) -> torch.Tensor:
    """An n×n matrix with a chosen spectrum.

    "svd": singular values log-spaced over [10^-log_cond, 1] (condition number 10^log_cond);
    "shifted": I − W, W with spectral radius rho (real or complex leading eigenvalues,
    non-normal part), the form of an adjoint system I − Jᵀ; singular when rho = 1.
    """
    if family == "svd":
        s = torch.logspace(0, -log_cond, n, dtype=DT)
        return _orthogonal(n, g) @ torch.diag(s) @ _orthogonal(n, g).T
    if n == 1:
        return torch.tensor([[1.0 - rho]], dtype=DT)
    kind = "complex" if family == "shifted-complex" else "real"
    W = block_matrix(n, g, kind=kind, rho=rho, rest=0.5 * rho, offdiag=2.0)
    return torch.eye(n, dtype=DT) - W


SOLVERS = {
    "GMRES": lambda rtol, steps, per: gs.solvers.GMRES(rtol=rtol, max_steps=steps, per_sample=per),
    "GMRES(3)": lambda rtol, steps, per: gs.solvers.GMRES(
        rtol=rtol, restart=3, max_steps=steps, per_sample=per
    ),
    "BiCGSTAB": lambda rtol, steps, per: gs.solvers.BiCGSTAB(rtol=rtol, max_steps=steps, per_sample=per),
    "FixedPointIteration": lambda rtol, steps, per: gs.solvers.FixedPointIteration(
        rtol=rtol, max_steps=steps, per_sample=per
    ),
    "Dense": lambda rtol, steps, per: gs.solvers.Dense(rtol=rtol, per_sample=per),
}


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 10),
    batch=st.integers(1, 3),
    per_sample=st.booleans(),
    family=st.sampled_from(["svd", "shifted-real", "shifted-complex"]),
    log_cond=st.floats(0.0, 7.0),
    rho=st.floats(0.1, 1.5),
    solver=st.sampled_from(sorted(SOLVERS)),
    rtol=st.sampled_from([None, 1e-3, 1e-8, 1e-11]),
    max_steps=st.sampled_from([2, 10, 200]),
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_solve_certificate_is_the_true_residual(
    n, batch, per_sample, family, log_cond, rho, solver, rtol, max_steps, seed
):
    g = torch.Generator().manual_seed(seed)
    if per_sample:  # independent samples: a block-diagonal matrix, one block per sample
        M = torch.block_diag(*[_block(n, family, log_cond, rho, g) for _ in range(batch)])
    else:  # the samples coupled: one matrix over the whole batch
        M = _block(batch * n, family, log_cond, rho, g)
    b = torch.randn(batch, n, generator=g, dtype=DT)
    op = dense_operator(M, b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gs.ConvergenceWarning)
        sol = gs.solvers.linear_solve(op, b, SOLVERS[solver](rtol, max_steps, per_sample))
    reported = [w for w in caught if issubclass(w.category, gs.ConvergenceWarning)]
    event(f"converged={sol.converged}")
    tol = sol.solver.rtol  # rtol=None resolves to the dtype's default
    assert tol == (rtol if rtol is not None else gs.solvers.default_solver_rtol(DT))
    assert bool(torch.isfinite(sol.value).all()), sol  # never a non-finite value
    # the true relative residual, recomputed from the dense matrix: per sample or whole
    r = (b.reshape(-1) - M @ sol.value.reshape(-1)).reshape(batch, n)
    if per_sample:
        true = r.norm(dim=1) / b.norm(dim=1)
    else:
        true = (r.norm() / b.norm()).reshape(1)
    assert sol.residual_per_sample.shape == true.shape
    assert torch.allclose(sol.residual_per_sample, true, rtol=1e-6, atol=1e-15 * tol)
    if sol.converged:
        assert bool((true <= tol * (1 + 1e-6)).all()), (sol, true)
        assert not reported, [str(w.message) for w in reported]
    else:
        assert bool((true > tol * (1 - 1e-6)).any()), (sol, true)
        assert len(reported) == 1 and not sol.status.ok
        assert sol.status.help in str(reported[0].message)


@pytest.mark.parametrize("per_sample", [True, False])
def test_dense_solve_of_an_exactly_singular_matrix_is_reported_not_raised(per_sample):
    b = torch.ones(2, 2, dtype=DT)
    M = torch.block_diag(torch.eye(2, dtype=DT), torch.zeros(2, 2, dtype=DT))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gs.ConvergenceWarning)
        sol = gs.solvers.linear_solve(dense_operator(M, b), b, gs.solvers.Dense(per_sample=per_sample))
    assert any(issubclass(w.category, gs.ConvergenceWarning) for w in caught)
    assert not sol.converged and bool(torch.isfinite(sol.value).all())
    assert sol.status is gs.Status.SINGULAR
    with pytest.raises(gs.ConvergenceError, match="singular"):
        gs.solvers.linear_solve(dense_operator(M, b), b, gs.solvers.Dense(strict=True))


# ------------------------------------------------------------------ compare() invariances
ENTRIES = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
SHAPES = st.lists(
    st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple), min_size=1, max_size=3
)


@st.composite
def gradient_pairs(draw):
    """Two gradient dicts over the same 1–3 parameters of small random shapes."""
    shapes = draw(SHAPES)
    est, ref = {}, {}
    for i, shape in enumerate(shapes):
        est[f"p{i}"] = torch.from_numpy(draw(arrays(np.float64, shape, elements=ENTRIES)))
        ref[f"p{i}"] = torch.from_numpy(draw(arrays(np.float64, shape, elements=ENTRIES)))
    return est, ref


def _flat(grads: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in grads.values()])


def _estimate(grads: dict, scale: float = 1.0) -> gs.estimators.GradientEstimate:
    return gs.estimators.GradientEstimate.from_grads({n: scale * v for n, v in grads.items()})


@settings(max_examples=200, deadline=None)
@given(pair=gradient_pairs(), scale=st.floats(1e-3, 1e3))
def test_compare_invariances(pair, scale):
    est, ref = pair
    a, b = _flat(est), _flat(ref)
    assume(float(a.norm()) > 1e-3 and float(b.norm()) > 1e-3)
    c = gs.compare(_estimate(est), _estimate(ref))
    # against the direct formulas
    cosine = float(a @ b / (a.norm() * b.norm()))
    assert c.cosine == pytest.approx(cosine, abs=1e-12)
    assert c.relative_error == pytest.approx(float((a - b).norm() / b.norm()), rel=1e-9)
    assert c.inner == pytest.approx(float(a @ b), abs=1e-12 * float(a.norm() * b.norm()))
    # cosine is invariant to a positive scaling of the estimate; norm_ratio scales with it
    scaled = gs.compare(_estimate(est, scale), _estimate(ref))
    assert scaled.cosine == pytest.approx(c.cosine, abs=1e-12)
    assert scaled.norm_ratio == pytest.approx(scale * c.norm_ratio, rel=1e-9)
    # a negative scaling flips the cosine
    assert gs.compare(_estimate(est, -scale), _estimate(ref)).cosine == pytest.approx(
        -c.cosine, abs=1e-12
    )
    # compare(a, a): cosine 1, error 0
    same = gs.compare(_estimate(ref), _estimate(ref))
    assert same.cosine == pytest.approx(1.0, abs=1e-12) and same.relative_error == 0.0
    assert same.absolute_error == 0.0 and same.norm_ratio == pytest.approx(1.0, rel=1e-12)
    # relative error of s·a against a is |s − 1|; scaling both leaves it unchanged
    assert gs.compare(_estimate(ref, scale), _estimate(ref)).relative_error == pytest.approx(
        abs(scale - 1), rel=1e-9, abs=1e-12
    )
    both = gs.compare(_estimate(est, scale), _estimate(ref, scale))
    assert both.relative_error == pytest.approx(c.relative_error, rel=1e-9)
    assert both.absolute_error == pytest.approx(scale * c.absolute_error, rel=1e-9)
    # per-parameter numbers add up to the whole
    assert set(c.per_param) == set(ref)
    scale_ab = float(a.norm() * b.norm())
    assert math.fsum(x.inner for x in c.per_param.values()) == pytest.approx(
        c.inner, abs=1e-12 * scale_ab
    )
    assert math.fsum(x.absolute_error**2 for x in c.per_param.values()) == pytest.approx(
        c.absolute_error**2, rel=1e-9
    )
    for name, part in c.per_param.items():
        assert part.inner == pytest.approx(
            float(est[name].reshape(-1) @ ref[name].reshape(-1)), abs=1e-12 * scale_ab
        )


# ------------------------------------------------------------------ estimator finiteness
@settings(max_examples=60, deadline=None)
@given(
    rho=st.floats(0.1, 3.0),
    steps=st.integers(1, 60),
    damping=st.sampled_from([0.2, 0.5, 1.0]),
    which=st.sampled_from(["Neumann", "Unrolled", "OneStep", "Exact"]),
    seed=st.integers(0, 10_000),
)
def test_estimates_are_finite_or_say_so(rho, steps, damping, which, seed):
    """Contractive or not, an estimate is finite with an ok status, or its status says why
    (and a warning is issued) — never a silent non-finite or exploding gradient."""
    g = torch.Generator().manual_seed(seed)
    n = 5
    Q = _orthogonal(n, g)
    W = Q @ torch.diag(torch.linspace(-rho, rho, n, dtype=DT)) @ Q.T  # symmetric, ρ(W) = rho
    x = torch.randn(2, n, generator=g, dtype=DT)
    eye = torch.eye(n, dtype=DT)
    if abs(float(torch.linalg.det(eye - W))) < 1e-6:
        assume(False)  # I − W (numerically) singular: no equilibrium of the linear map
    h = torch.linalg.solve(eye - W, x.T).T
    problem = gs.FixedPointProblem.from_function(lambda p, h, x: h @ p["W"].T + x, {"W": W}, h, x)
    estimator = {
        "Neumann": gs.Neumann(steps, damping),
        "Unrolled": gs.Unrolled(steps, damping),
        "OneStep": gs.OneStep(),
        "Exact": gs.Exact(gs.solvers.GMRES(max_steps=60)),
    }[which]
    cot = torch.randn(2, n, generator=g, dtype=DT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = gs.estimate_gradient(problem, cot, estimator)
    finite = all(bool(torch.isfinite(t).all()) for t in est.grads.values())
    warned = any(issubclass(w.category, gs.ConvergenceWarning) for w in caught)
    if est.status.ok:
        assert finite and not warned, (est.status, est.series_ratio)
    else:
        assert warned, est.status
    # the series ratio, where there is one, is what the status says: grew ⇔ ratio > 1 (k > 1)
    if which in ("Neumann", "Unrolled") and steps > 1 and finite:
        assert (est.status is gs.Status.SERIES_GREW) == (est.series_ratio > 1), est.series_ratio
    # a contractive damped map (ρ(B_λ) < 1 for this symmetric W) never grows
    if which in ("Neumann", "Unrolled") and max(abs(1 - damping * (1 - mu)) for mu in (-rho, rho)) < 1:
        assert est.status.ok, (est.status, est.series_ratio)
