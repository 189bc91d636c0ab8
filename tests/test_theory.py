"""Damping bounds, steps needed and Theorem 1, against brute force and dense references."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from spectral_cases import DT, block_matrix, linear_problem

import gradscope as gs


def _rho_B(W: torch.Tensor, lam: float) -> float:
    eye = torch.eye(W.shape[-1], dtype=DT)
    return float(torch.linalg.eigvals((1 - lam) * eye + lam * W).abs().max())


SPECTRA = {
    "real-negative": lambda g: block_matrix(12, g, kind="real", rho=3.0, rest=0.5),
    "complex": lambda g: block_matrix(12, g, kind="complex", rho=1.4, phi=2.5, rest=0.5),
    "contractive": lambda g: block_matrix(12, g, kind="real", rho=0.9, rest=0.8, offdiag=1.0),
}


@pytest.mark.parametrize("name", list(SPECTRA))
def test_damping_limit_and_optimum_match_brute_force_scan(name):
    g = torch.Generator().manual_seed(7)
    W = SPECTRA[name](g)
    if name == "real-negative":  # leading eigenvalue -3: needs λ < 0.5
        W = -W
    problem = linear_problem(W)
    limit = gs.theory.damping_limit(problem)
    grid = np.linspace(1e-3, 3.0, 3000)
    rho = np.array([_rho_B(W, lam) for lam in grid])
    below = grid[rho < 1]
    assert limit.exists
    # the admissible set is the interval (0, λ_max): its right end is the last grid point with ρ < 1
    assert below.max() <= limit.value + 1e-3 and limit.value - below.max() <= grid[1] - grid[0]
    assert np.all(rho[grid < limit.value - 1e-9] < 1) and np.all(
        rho[grid > limit.value + 1e-9] >= 1 - 1e-12
    )
    # optimum over (0, 1]: the grid minimiser
    choice = gs.theory.optimal_damping(problem)
    fine = np.linspace(1e-4, 1.0, 10000)
    values = np.array([_rho_B(W, lam) for lam in fine[::10]])
    coarse_best = fine[::10][values.argmin()]
    local = fine[np.abs(fine - coarse_best) <= 2e-3]
    local_values = np.array([_rho_B(W, lam) for lam in local])
    assert abs(choice.damping - local[local_values.argmin()]) <= 2e-4
    assert choice.radius <= local_values.min() + 1e-9
    assert choice.radius == pytest.approx(_rho_B(W, choice.damping), rel=1e-10)


def test_closed_form_real_spectrum():
    mu = torch.tensor([-0.9, 0.2, 0.7], dtype=DT)
    choice = gs.theory.optimal_damping(mu)
    assert choice.damping == pytest.approx(2 / (2 + 0.9 - 0.7), rel=1e-8)
    assert choice.radius == pytest.approx((0.7 + 0.9) / (2 + 0.9 - 0.7), rel=1e-8)
    assert gs.theory.damping_limit(torch.tensor([-3.0])).value == pytest.approx(0.5)


def test_no_admissible_damping_is_reported_not_raised():
    limit = gs.theory.damping_limit(torch.tensor([1.5 + 0.2j, 0.3]))
    assert not limit.exists and limit.value is None and not limit.admits(0.1)
    assert "no damping" in limit.message
    assert not gs.theory.optimal_damping(torch.tensor([1.5, 0.3])).converges


def test_steps_needed_sees_non_normal_transient_growth():
    # ρ(B) = 0.6 but ‖B^k‖ first grows: ρ^k underestimates k
    W = torch.tensor([[0.5, 6.0, 0.0], [0.0, 0.5, 6.0], [0.0, 0.0, 0.3]], dtype=DT)
    problem = linear_problem(W)
    lam, tol = 0.8, 1e-4
    result = gs.theory.steps_needed(problem, lam, tol=tol, kappa=2.0)
    eye = torch.eye(3, dtype=DT)
    B = (1 - lam) * eye + lam * W
    brute = [
        float(torch.linalg.matrix_norm(torch.linalg.matrix_power(B, k), 2)) for k in range(1, 200)
    ]
    assert result.norms == pytest.approx(brute[: len(result.norms)], rel=1e-10)
    assert result.tolerance_steps == next(k for k, n in enumerate(brute, 1) if n <= tol)
    assert result.theorem1_steps == next(k for k, n in enumerate(brute, 1) if n <= 1 / 4)
    assert result.radius == pytest.approx(1 - lam * 0.5, rel=1e-12)
    assert result.asymptotic_steps == math.ceil(math.log(tol) / math.log(0.6))
    assert result.tolerance_steps > result.asymptotic_steps
    assert result.transient_growth and "non-normal" in result.note
    # the matrix-free path agrees
    free = gs.theory.steps_needed(problem, lam, tol=tol, kappa=2.0, dense=False, max_steps=60)
    assert free.tolerance_steps == result.tolerance_steps


def test_steps_needed_is_vacuous_without_enough_parameters():
    W = block_matrix(4, torch.Generator().manual_seed(0), kind="real", rho=0.5)
    result = gs.theory.steps_needed(linear_problem(W), 0.5)  # p = 16 ≥ d = 4, but F_θ = h*ᵀ ⊗ I has rank 4
    assert result.kappa == pytest.approx(1.0)  # F_θ F_θᵀ = ‖h*‖² I
    fn = lambda p, h: p["a"] * h
    problem = gs.FixedPointProblem.from_function(
        fn, {"a": torch.tensor(0.5, dtype=DT)}, torch.zeros(3, dtype=DT)
    )
    vac = gs.theory.steps_needed(problem, 0.5)
    assert vac.theorem1_steps is None and "vacuous" in vac.note and math.isinf(vac.kappa)


# ---------------------------------------------------------------------- Theorem 1
def _tanh_problem(d: int, n: int, scale: float, seed: int, batch: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    p = {
        "W": torch.randn(d, d, generator=g, dtype=DT) * scale / math.sqrt(d),
        "U": torch.randn(d, n, generator=g, dtype=DT),
        "b": torch.randn(d, generator=g, dtype=DT) * 0.3,
    }
    x = torch.randn((batch, n) if batch else (n,), generator=g, dtype=DT)

    def fn(p, h, x):
        return torch.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])

    h0 = torch.zeros((batch, d) if batch else (d,), dtype=DT)
    fp = gs.find_fixed_point(
        lambda h, x: fn(p, h, x), x, h0=h0, rtol=1e-13, max_steps=2000, warn=False
    )
    problem = gs.FixedPointProblem.from_function(fn, p, fp.value, x, rtol=1.0)
    cot = torch.randn(h0.shape, generator=g, dtype=DT)
    return problem, cot


def _estimator(kind: int, k: int, lam: float):
    return [gs.Neumann(k, lam), gs.Unrolled(k, lam), gs.OneStep(), gs.Exact(gs.solvers.Dense())][kind]


def _violates(check: gs.theory.AscentCheck) -> bool:
    scale = check.comparison.overall.estimate_norm * check.comparison.overall.reference_norm
    return check.holds and check.inner < -1e-12 * max(scale, 1e-300)


def _dense_theorem1(problem, kind: int, k: int, lam: float) -> tuple[float, float, float]:
    """(‖E‖₂, σ_max(F_θ), σ_min(F_θ)) with E = P(I − Jᵀ) − F_θᵀ, independently of gradscope.

    J and F_θ by torch.func.jacrev; P in closed form from them (NPG λF_θᵀ Σ_{t<k}(B_λᵀ)^t,
    one-step F_θᵀ, exact F_θᵀ(I − Jᵀ)⁻¹) or, for UPG, the jacrev of the k unrolled damped
    steps from h*; the norms by numpy's SVD. σ_min is 0 when F_θ has fewer columns than rows.
    """
    h, params, inputs = problem.h_star, dict(problem.params), problem.inputs
    d = h.numel()
    J = torch.func.jacrev(lambda hh: problem.fn(params, hh, *inputs))(h).reshape(d, d)

    def flat_jacobian(fun):  # (d, p), parameters in param_names order
        jac = torch.func.jacrev(fun)(params)
        return torch.cat([jac[n].reshape(d, -1) for n in problem.param_names], dim=1)

    F = flat_jacobian(lambda p: problem.fn(p, h, *inputs))
    eye = torch.eye(d, dtype=DT)
    if kind == 0:  # Neumann(k, λ)
        BT = ((1 - lam) * eye + lam * J).T
        P = lam * F.T @ sum(torch.linalg.matrix_power(BT, t) for t in range(k))
    elif kind == 1:  # Unrolled(k, λ): h_{t+1} = (1 − λ)h_t + λF(h_t), h_0 = h* held fixed

        def unrolled(p):
            z = h
            for _ in range(k):
                z = (1 - lam) * z + lam * problem.fn(p, z, *inputs)
            return z

        P = flat_jacobian(unrolled).T
    elif kind == 2:  # OneStep
        P = F.T
    else:  # Exact
        P = F.T @ torch.linalg.inv(eye - J.T)
    E = (P @ (eye - J.T) - F.T).numpy()
    s = np.linalg.svd(F.numpy(), compute_uv=False)
    s_min = float(s[d - 1]) if F.shape[1] >= d else 0.0
    return float(np.linalg.norm(E, 2)), float(s[0]), s_min


@settings(max_examples=120, deadline=None)
@given(
    d=st.integers(1, 3),
    extra=st.integers(0, 3),
    scale=st.floats(0.05, 1.5),
    seed=st.integers(0, 10_000),
    kind=st.integers(0, 3),
    k=st.integers(1, 30),
    lam=st.floats(0.1, 1.0),
    batch=st.sampled_from([0, 0, 2]),
)
def test_theorem1_verdict_matches_a_dense_reference(d, extra, scale, seed, kind, k, lam, batch):
    problem, cot = _tanh_problem(d, d + extra, scale, seed, batch)
    assume(bool(torch.isfinite(problem.h_star).all()))
    assume(problem.residual.max_relative <= 1e-8)
    error, s_max, s_min = _dense_theorem1(problem, kind, k, lam)
    threshold = s_min**2 / s_max
    # the verdict is a sharp comparison: leave out draws within rounding of a boundary
    assume(abs(error - threshold) > 1e-6 * max(error, threshold))
    assume(abs(s_min - 1e-8 * s_max) > 1e-6 * s_max)
    if s_min <= 1e-8 * s_max:
        expected = "vacuous"
    else:
        expected = "holds" if error <= threshold else "fails"
    event(f"verdict {expected}")
    check = gs.theory.check_ascent(problem, _estimator(kind, k, lam), cot, dense=True)
    assert check.verdict == expected, (check, error, threshold)
    assert check.error_norm == pytest.approx(error, rel=1e-7, abs=1e-9 * s_max)
    assert check.sigma_max == pytest.approx(s_max, rel=1e-9)
    assert check.sigma_min == pytest.approx(s_min, rel=1e-7, abs=1e-9 * s_max)
    # Theorem 1: where it holds, the estimate is an ascent direction
    assert not _violates(check), check


def test_theorem1_holds_in_a_good_fraction_and_never_misleads():
    verdicts = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        d = int(rng.integers(1, 4))
        problem, cot = _tanh_problem(
            d, d + int(rng.integers(0, 3)), float(rng.uniform(0.05, 1.0)), seed
        )
        est = _estimator(seed % 4, int(rng.integers(5, 30)), float(rng.uniform(0.3, 1.0)))
        check = gs.theory.check_ascent(problem, est, cot, dense=True)
        assert not _violates(check)
        verdicts.append(check.verdict)
    assert verdicts.count("holds") >= 15, verdicts
    assert "vacuous" not in verdicts  # p ≥ d and U x makes F_θ full row rank


def test_theorem1_identity_for_neumann_and_vacuous_case():
    problem, cot = _tanh_problem(3, 4, 0.8, seed=1)
    k, lam = 4, 0.7
    check = gs.theory.check_ascent(problem, gs.Neumann(k, lam), cot, dense=True)
    JT = gs.operators.jacobian_transpose(problem)
    F = gs.operators.param_jacobian_dense(problem)
    B = (1 - lam) * torch.eye(3, dtype=DT) + lam * JT.T.dense()
    ref = torch.linalg.matrix_norm(
        F.T @ torch.linalg.matrix_power(B.T, k), 2
    )  # ‖E_neu‖ = ‖F_θᵀ(Bᵀ)^k‖
    assert check.error_norm == pytest.approx(float(ref), rel=1e-10)
    s = torch.linalg.svdvals(F)
    assert check.sigma_max == pytest.approx(float(s[0])) and check.sigma_min == pytest.approx(
        float(s[2])
    )
    # fewer parameters than state entries: vacuous, not "fails"
    W = 0.3 * torch.eye(3, dtype=DT)
    small = gs.FixedPointProblem.from_function(
        lambda p, h: p["a"] * (W @ h), {"a": torch.tensor(1.0, dtype=DT)}, torch.zeros(3, dtype=DT)
    )
    vac = gs.theory.check_ascent(small, gs.OneStep(), torch.ones(3, dtype=DT))
    assert vac.verdict == "vacuous" and "vacuous" in vac.message


def test_verdict_is_a_string_enum_with_help():
    V = gs.theory.Verdict
    assert [v.value for v in V] == ["holds", "fails", "vacuous"]
    assert V.HOLDS == "holds" and V("fails") is V.FAILS
    codes = {"holds": 1.0, "vacuous": 0.0, "fails": -1.0}  # a dict of strings, as the monitor keeps
    assert codes[V.VACUOUS] == 0.0
    assert str(V.HOLDS) == "holds" and f"{V.FAILS:>6}" == " fails"
    assert all(v.help for v in V) and "σ_min(F_θ) ≈ 0" in V.VACUOUS.help
    problem, cot = _tanh_problem(3, 4, 0.8, seed=1)
    check = gs.theory.check_ascent(problem, gs.Neumann(30, 1.0), cot, dense=True)
    assert check.verdict is V.HOLDS and check.holds
    report = gs.check_theory(problem, gs.Neumann(30, 1.0), cot)
    assert report["Theorem 1"].value is V.HOLDS
    plain = next(f for f in report.to_dict()["findings"] if f["name"] == "Theorem 1")
    assert type(plain["value"]) is str and plain["value"] == "holds"
    assert "Theorem 1" in str(report) and " holds " in str(report)
    # a string given to AscentCheck becomes the enum
    again = dataclasses.replace(check, verdict="fails")
    assert again.verdict is V.FAILS and not again.holds


@pytest.mark.parametrize(
    "estimator", [gs.Neumann(3, 0.6), gs.Unrolled(3, 0.6), gs.OneStep(), gs.Exact(gs.solvers.Dense())]
)
def test_matrix_free_error_norm_matches_dense(estimator):
    problem, _ = _tanh_problem(4, 6, 0.9, seed=3, batch=2)
    dense = gs.theory.check_ascent(problem, estimator, dense=True)
    free = gs.theory.check_ascent(problem, estimator, dense=False)
    assert free.error_norm == pytest.approx(dense.error_norm, rel=1e-6, abs=1e-9)
    assert free.sigma_max == pytest.approx(dense.sigma_max, rel=1e-8)
    assert free.sigma_min == pytest.approx(dense.sigma_min, rel=1e-6)
    assert free.verdict == dense.verdict


def test_unrolled_at_inexact_fixed_point_is_still_a_linear_map():
    problem, cot = _tanh_problem(3, 4, 0.8, seed=2)
    rough = gs.FixedPointProblem.from_function(
        problem.fn, problem.params, problem.h_star + 1e-3, *problem.inputs, rtol=1.0
    )
    dense = gs.theory.check_ascent(rough, gs.Unrolled(4, 0.5), cot, dense=True)
    free = gs.theory.check_ascent(rough, gs.Unrolled(4, 0.5), dense=False)
    assert free.error_norm == pytest.approx(dense.error_norm, rel=1e-6)


def test_bad_input_raises_clearly():
    problem = gs.FixedPointProblem.from_function(lambda p, h: 0.5 * h, {}, torch.zeros(2, dtype=DT))
    with pytest.raises(ValueError, match="no parameters"):
        gs.theory.check_ascent(problem, gs.OneStep())
    with pytest.raises(ValueError, match="no parameters"):
        gs.theory.param_singular_values(problem)
    with pytest.raises(ValueError, match="no parameters"):
        gs.theory.steps_needed(problem, 0.5)
    W = block_matrix(3, torch.Generator().manual_seed(0), kind="real", rho=0.5)
    lin = linear_problem(W)
    with pytest.raises(ValueError, match="damping"):
        gs.theory.steps_needed(lin, 1.5)
    with pytest.raises(ValueError, match="damping"):
        gs.theory.steps_needed(lin, 0.0)
    with pytest.raises(ValueError, match="max_steps"):
        gs.theory.steps_needed(lin, 0.5, max_steps=0)
    with pytest.raises(ValueError, match="steps"):
        gs.Neumann(0, 0.5)
    with pytest.raises(TypeError, match="estimator"):
        gs.theory.check_ascent(lin, "npg")
    with pytest.raises(ValueError, match="no eigenvalues"):
        gs.theory.damping_limit(torch.tensor([]))


# ---------------------------------------------------------------------- check_theory
def test_check_theory_report_reads_and_cites():
    import json

    problem, cot = _tanh_problem(3, 4, 0.9, seed=1, batch=2)
    report = gs.check_theory(problem, gs.Neumann(5, 0.9), cot)
    text = str(report)
    for name in ("ρ(J)", "‖J‖₂", "σ_min(I − J)", "λ_max", "Theorem 1", "cosine", "Recommendation"):
        assert name in text
    assert (
        "Geng et al. 2021, Theorem 1" in text
        and "derived, see the docs page 'Damping' (docs/explanation/damping.rst)" in text
    )
    data = report.to_dict()
    json.dumps(data)
    assert all(f["source"] for f in data["findings"])
    JT = gs.operators.jacobian_transpose(problem)
    J = JT.T.dense(per_sample=True)
    assert report["ρ(J)"].value == pytest.approx(
        float(torch.linalg.eigvals(J).abs().max()), rel=1e-10
    )
    assert report["‖J‖₂"].value == pytest.approx(
        float(torch.linalg.matrix_norm(J, 2).max()), rel=1e-10
    )
    exact = gs.estimate_gradient(problem, cot, gs.Exact())
    npg = gs.estimate_gradient(problem, cot, gs.Neumann(5, 0.9))
    assert report["cosine"].value == pytest.approx(gs.compare(npg, exact).cosine, rel=1e-10)


def test_check_theory_says_when_a_spectral_estimate_did_not_converge(monkeypatch):
    import gradscope.theory.report as theory_report

    problem = gs.synthetic.random_tanh_problem(d=80, n=8, batch=1, seed=0)  # > 64: Arnoldi, not dense
    cot = torch.randn(problem.h_star.shape, generator=torch.Generator().manual_seed(0), dtype=DT)
    converged = str(gs.check_theory(problem, gs.Neumann(5, 0.5), cot))
    assert "NOT converged" not in converged
    few = theory_report.Arnoldi
    monkeypatch.setattr(theory_report, "Arnoldi", lambda: few(max_steps=5))
    line = next(
        row
        for row in str(gs.check_theory(problem, gs.Neumann(5, 0.5), cot)).splitlines()
        if row.strip().startswith("ρ(J)")
    )
    assert "NOT converged (Arnoldi, 5 products" in line


def test_check_theory_flags_inadmissible_damping():
    # μ = -3: only λ < 0.5 converges; the report says so and recommends a smaller λ
    W = torch.diag(torch.tensor([-3.0, 0.2, 0.5], dtype=DT))
    fn = lambda p, h, x: p["W"] @ h + p["b"] + x
    x = torch.ones(3, dtype=DT)
    h = torch.linalg.solve(torch.eye(3, dtype=DT) - W, x)
    problem = gs.FixedPointProblem.from_function(fn, {"W": W, "b": torch.zeros(3, dtype=DT)}, h, x)
    report = gs.check_theory(problem, gs.Neumann(5, 0.8), torch.ones(3, dtype=DT))
    assert report.limit.value == pytest.approx(0.5)
    assert report["λ = 0.8 admissible"].value is False
    assert "outside this range" in report.recommendation
    assert report.optimum.damping == pytest.approx(2 / (2 + 3 - 0.5), rel=1e-6)
    with pytest.raises(TypeError, match="estimator"):
        gs.check_theory(problem, None)
