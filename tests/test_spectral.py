"""Spectral estimates against dense torch.linalg references (float64, seeded)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from spectral_cases import DT, block_matrix, linear_problem, tanh_problem

import gradscope as gs


def _batch(d: int, B: int, seed: int, **kw) -> torch.Tensor:
    return _batch_mu(d, B, seed, **kw)[0]


def _batch_mu(d: int, B: int, seed: int, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample matrices and their eigenvalues, known by construction (no dense eig)."""
    g = torch.Generator().manual_seed(seed)
    pairs = [block_matrix(d, g, rho=0.9 + 0.03 * b, with_eigenvalues=True, **kw) for b in range(B)]
    return torch.stack([W for W, _ in pairs]), torch.stack([mu for _, mu in pairs])


CASES = [
    ("normal-real", 64, 4, {"kind": "real"}),
    ("normal-complex", 64, 4, {"kind": "complex"}),
    ("nonnormal-real", 64, 4, {"kind": "real", "offdiag": 2.0}),
    ("nonnormal-complex", 96, 3, {"kind": "complex", "offdiag": 2.0}),
    ("nonnormal-complex-1024", 1024, 1, {"kind": "complex", "offdiag": 1.0}),
    ("normal-real-1024", 1024, 2, {"kind": "real"}),
]


@functools.cache
def _build(index: int):
    name, d, B, kw = CASES[index]
    W, mu = _batch_mu(d, B, seed=len(name) + d, **kw)
    return linear_problem(W), W, mu, kw.get("offdiag", 0.0) == 0.0


@pytest.fixture(params=range(len(CASES)), ids=[c[0] for c in CASES])
def case(request):
    return _build(request.param)


# dense SVD of a 1024×1024 non-normal block is too slow for the suite: norms on the others
NORM_CASES = [i for i, c in enumerate(CASES) if c[1] <= 128 or not c[3].get("offdiag")]


@pytest.fixture(params=NORM_CASES, ids=[CASES[i][0] for i in NORM_CASES])
def norm_case(request):
    return _build(request.param)


def test_spectral_radius_within_one_percent_in_100_products(case):
    problem, W, mu, _ = case
    est = gs.spectral_radius(problem, gs.spectral.Arnoldi(max_steps=100))
    ref = mu.abs().amax(-1)
    if W.shape[-1] <= 128:  # the construction is right: dense check where it is cheap
        assert torch.allclose(torch.linalg.eigvals(W).abs().amax(-1), ref, rtol=1e-10)
    assert est.matvecs <= 100
    assert torch.allclose(est.per_sample, ref, rtol=1e-2, atol=0)
    assert est.value == pytest.approx(float(ref.max()), rel=1e-2)
    assert est.eigenvalues.dtype == torch.complex128
    assert est.eigenvalues.shape[0] == W.shape[0]
    assert est.converged


def test_spectral_norm_and_smallest_singular_value_within_one_percent(norm_case):
    problem, W, mu, normal = norm_case
    norm = gs.spectral.spectral_norm(problem, gs.spectral.Lanczos(max_steps=100))
    smin = gs.spectral.smallest_singular_value(problem, gs.spectral.Lanczos(max_steps=150))
    if normal:  # singular values of a normal matrix are |μ|, those of I − W are |1 − μ|
        ref_norm, ref_smin = mu.abs().amax(-1), (1 - mu).abs().amin(-1)
    else:
        eye = torch.eye(W.shape[-1], dtype=DT)
        ref_norm = torch.linalg.matrix_norm(W, 2)
        ref_smin = torch.linalg.svdvals(eye - W)[..., -1]
    assert torch.allclose(norm.per_sample, ref_norm, rtol=1e-2, atol=0)
    assert torch.allclose(smin.per_sample, ref_smin, rtol=1e-2, atol=0)
    assert smin.value == pytest.approx(float(ref_smin.min()), rel=1e-2)
    assert (norm.residual >= 0).all()


def test_complex_leading_pair_is_found_and_power_method_is_not():
    g = torch.Generator().manual_seed(1)
    W = block_matrix(32, g, kind="complex", rho=0.9, phi=2.0)[None]
    problem = linear_problem(W)
    est = gs.spectral_radius(problem)
    top = est.eigenvalues[0, :2]
    assert torch.allclose(top.abs(), torch.full((2,), 0.9, dtype=DT), rtol=1e-8)
    assert torch.allclose(top.imag.abs(), torch.full((2,), 0.9 * np.sin(2.0), dtype=DT), rtol=1e-8)
    peers = gs.spectral.spectral_radius(problem, gs.spectral.PowerIteration())
    assert abs(peers.value - 0.9) > 0.05  # the Rayleigh quotient oscillates on a complex pair
    assert not peers.converged


def test_references_agree_on_a_tanh_network():
    problem = tanh_problem(d=40, n=8, batch=3, scale=0.9)
    dense = gs.spectral_radius(problem, gs.spectral.DenseSpectrum())
    arnoldi = gs.spectral_radius(problem, gs.spectral.Arnoldi(max_steps=40))
    scipy = gs.spectral_radius(problem, gs.spectral.ScipyEigs())
    J = torch.func.vmap(
        torch.func.jacrev(lambda h, x: problem.fn(problem.params, h[None], x[None])[0])
    )(problem.h_star, problem.inputs[0])
    ref = torch.linalg.eigvals(J).abs().amax(-1)
    for est in (dense, arnoldi, scipy):
        assert torch.allclose(est.per_sample, ref, rtol=1e-8), est
    assert dense.per_sample.shape == (3,)


def test_coupled_samples_give_one_value():
    # a cell that mixes the batch (mean over samples) has one spectrum for the whole state
    g = torch.Generator().manual_seed(3)
    W = 0.3 * torch.randn(5, 5, generator=g, dtype=DT)
    x = torch.randn(4, 5, generator=g, dtype=DT)

    def fn(p, h, x):
        return h @ p["W"].T + 0.5 * h.mean(0, keepdim=True) + x

    M = torch.kron(torch.eye(4, dtype=DT), W) + 0.5 * torch.kron(
        torch.full((4, 4), 0.25, dtype=DT), torch.eye(5, dtype=DT)
    )
    h = torch.linalg.solve(torch.eye(20, dtype=DT) - M, x.reshape(-1)).reshape(4, 5)
    problem = gs.FixedPointProblem.from_function(fn, {"W": W}, h, x)
    assert not problem.samples_independent
    est = gs.spectral_radius(problem)
    assert est.per_sample.shape == (1,)
    assert est.value == pytest.approx(float(torch.linalg.eigvals(M).abs().max()), rel=1e-10)
    norm = gs.spectral.spectral_norm(problem)
    assert norm.value == pytest.approx(float(torch.linalg.matrix_norm(M, 2)), rel=1e-8)


def test_damped_power_norm_matches_dense_and_sees_transient_growth():
    # non-normal 2×2: ρ(B) < 1 but ‖B^k‖ grows before it decays
    W = torch.tensor([[0.5, 4.0], [0.0, 0.5]], dtype=DT)
    problem = linear_problem(W)
    lam = 0.8
    B = (1 - lam) * torch.eye(2, dtype=DT) + lam * W
    norms = []
    for k in (1, 2, 3, 8, 20):
        est = gs.spectral.damped_power_norm(problem, lam, k)
        ref = torch.linalg.matrix_norm(torch.linalg.matrix_power(B, k), 2)
        assert est.value == pytest.approx(float(ref), rel=1e-8)
        dense = gs.spectral.damped_power_norm(problem, lam, k, gs.spectral.DenseSpectrum())
        assert dense.value == pytest.approx(float(ref), rel=1e-12)
        norms.append(est.value)
    assert norms[1] > norms[0] > 1 and norms[-1] < 1  # growth first, decay later


def test_scipy_reference_on_larger_block():
    W = _batch(40, 2, seed=5, kind="real", offdiag=1.0)
    problem = linear_problem(W)
    est = gs.spectral_radius(problem, gs.spectral.ScipyEigs(eigenvalues=4))
    ref = torch.linalg.eigvals(W).abs().amax(-1)
    assert torch.allclose(est.per_sample, ref, rtol=1e-8)
    assert est.max_residual < 1e-8


def test_diagnostics_do_not_touch_global_rng():
    problem = linear_problem(_batch(8, 2, seed=0, kind="real"))
    before = torch.get_rng_state()  # whatever state the session is in
    gs.spectral_radius(problem)
    gs.spectral.spectral_norm(problem)
    gs.spectral.spectral_radius(problem, gs.spectral.PowerIteration())
    assert torch.equal(before, torch.get_rng_state())


def test_bad_input_raises_clearly():
    problem = linear_problem(_batch(4, 1, seed=0, kind="real"))
    with pytest.raises(ValueError, match="damping"):
        gs.spectral.damped_power_norm(problem, 1.5, 2)
    with pytest.raises(ValueError, match="damping"):
        gs.spectral.damped_power_norm(problem, 0.0, 2)
    with pytest.raises(ValueError, match="steps"):
        gs.spectral.damped_power_norm(problem, 0.5, 0)
    with pytest.raises(TypeError, match="method"):
        gs.spectral_radius(problem, gs.spectral.Lanczos())
    with pytest.raises(TypeError, match="FixedPointProblem"):
        gs.spectral.spectral_norm(torch.eye(2))
    with pytest.raises(ValueError, match="max_steps"):
        gs.spectral.Arnoldi(max_steps=0)


# ---------------------------------------------------------------------- operators
def _operators(problem):
    """Maps built from J with the operator algebra, by name."""
    JT = gs.operators.jacobian_transpose(problem)
    J = JT.T
    return {
        "Jᵀ": JT,
        "J": J,
        "B_0.5": gs.operators.damped(J, 0.5),
        "B_0.7ᵀ": gs.operators.damped(JT, 0.7),
        "I − Jᵀ": JT.identity() - JT,
    }


def _blocks(op):
    M = op.dense(per_sample=op.independent_samples)
    return M if op.independent_samples and op.like.dim() >= 2 else M[None]


@pytest.mark.parametrize("kind", ["normal", "non-normal"])
def test_operator_entry_matches_dense_eigenvalues_and_singular_values(kind):
    g = torch.Generator().manual_seed(11)
    offdiag = 2.0 if kind == "non-normal" else 0.0
    W = torch.stack(
        [block_matrix(24, g, kind="complex", rho=0.8, offdiag=offdiag) for _ in range(3)]
    )
    problem = linear_problem(W)
    if kind == "non-normal":  # ‖W‖₂ ≫ ρ(W): the radius and the norm differ
        assert float(torch.linalg.matrix_norm(W, 2).min()) > 1.5
    for name, op in _operators(problem).items():
        M = _blocks(op)
        assert M.shape == (3, 24, 24), name  # per-sample blocks: the samples are independent
        eig = torch.linalg.eigvals(M).abs().amax(-1)
        s = torch.linalg.svdvals(M)
        radius = gs.spectral_radius(op, gs.spectral.Arnoldi(max_steps=24))
        assert radius.quantity == f"ρ({op.name})" and radius.per_sample.shape == (3,)
        assert torch.allclose(radius.per_sample, eig, rtol=1e-7), name
        assert radius.matvecs <= 24
        norm = gs.spectral.spectral_norm(op, gs.spectral.Lanczos(max_steps=24))
        assert torch.allclose(norm.per_sample, s[:, 0], rtol=1e-8), name
        smin = gs.spectral.smallest_singular_value(op, gs.spectral.Lanczos(max_steps=24))
        assert torch.allclose(smin.per_sample, s[:, -1], rtol=1e-6), name
        eye = torch.eye(24, dtype=DT)
        power = torch.linalg.matrix_power(0.4 * eye + 0.6 * M, 3)
        bk = gs.spectral.damped_power_norm(op, 0.6, 3, gs.spectral.Lanczos(max_steps=24))
        assert torch.allclose(bk.per_sample, torch.linalg.svdvals(power)[:, 0], rtol=1e-8), name
        dense = gs.spectral_radius(op, gs.spectral.DenseSpectrum())
        assert torch.allclose(dense.per_sample, eig, rtol=1e-12), name


def test_operator_entry_agrees_with_the_problem_entry():
    g = torch.Generator().manual_seed(2)
    problem = linear_problem(torch.stack([block_matrix(16, g, kind="real", offdiag=1.0)] * 2))
    ops = _operators(problem)
    J = ops["J"]
    pairs = [
        (gs.spectral_radius(problem), gs.spectral_radius(ops["Jᵀ"])),
        (gs.spectral.spectral_norm(problem), gs.spectral.spectral_norm(J)),
        (
            gs.spectral.smallest_singular_value(problem),
            gs.spectral.smallest_singular_value(J.identity() - J),
        ),
        (
            gs.spectral.damped_power_norm(problem, 0.5, 4),
            gs.spectral.damped_power_norm(J, 0.5, 4),
        ),
    ]
    for from_problem, from_operator in pairs:
        assert torch.allclose(from_problem.per_sample, from_operator.per_sample, rtol=1e-10)
        assert from_problem.matvecs == from_operator.matvecs


def test_operator_entry_on_a_user_operator_coupled_and_non_normal():
    # a FunctionOperator on a (4, 3) state whose samples are coupled: one spectrum, dense 12×12
    g = torch.Generator().manual_seed(5)
    M = torch.triu(torch.randn(12, 12, generator=g, dtype=DT), 1) * 2 + torch.diag(
        torch.linspace(-0.9, 0.6, 12, dtype=DT)
    )
    like = torch.zeros(4, 3, dtype=DT)

    def as_op(A, name, transpose=None):
        return gs.operators.FunctionOperator(
            lambda v: (A @ v.reshape(-1)).reshape(4, 3), like, name, transpose=transpose
        )

    A = as_op(M, "A", transpose=lambda: as_op(M.T, "Aᵀ"))
    assert not A.independent_samples
    assert torch.allclose(A.dense(), M)
    radius = gs.spectral_radius(A)
    assert radius.per_sample.shape == (1,) and radius.quantity == "ρ(A)"
    assert radius.value == pytest.approx(0.9, rel=1e-8)  # triangular: the diagonal
    s = torch.linalg.svdvals(M)
    assert gs.spectral.spectral_norm(A).value == pytest.approx(float(s[0]), rel=1e-8)
    assert s[0] > 3 * radius.value  # non-normal
    smin = gs.spectral.smallest_singular_value(A, gs.spectral.DenseSpectrum())
    assert smin.value == pytest.approx(float(s[-1]), rel=1e-10)
    # without a transpose: the radius works, the norms say what is missing
    plain = as_op(M, "A")
    assert gs.spectral_radius(plain).value == pytest.approx(0.9, rel=1e-8)
    with pytest.raises(TypeError, match="no known transpose"):
        gs.spectral.spectral_norm(plain)
    with pytest.raises(TypeError, match="LinearOperator"):
        gs.spectral_radius(M)


def test_scipy_eigs_on_a_tiny_block_matches_dense_without_warnings():
    # blocks of 2×2 take the dense path, whose eigenvectors' .imag is a read-only view:
    # torch warned "given NumPy array is not writable" (an error under pytest here)
    W = torch.tensor([[0.9, 0.2], [0.0, -0.5]], dtype=DT)  # real eigenvalues: real eigenvectors
    problem = gs.FixedPointProblem.from_function(lambda p, h: p["W"] @ h, {"W": W}, torch.zeros(2, dtype=DT))
    est = gs.spectral.spectral_radius(problem, gs.spectral.ScipyEigs())
    assert abs(est.value - float(torch.linalg.eigvals(W).abs().max())) < 1e-12
