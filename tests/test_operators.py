import numpy as np
import pytest
import torch
from cases import DT, MLPCell, TanhCell, randn, solved_problem

import gradscope as gs


@pytest.fixture(params=["tanh", "mlp"])
def problem(request):
    cell = TanhCell(d=6, n=4) if request.param == "tanh" else MLPCell(d=6, n=4)
    return solved_problem(cell, randn(3, 4))


def jac_reference(problem):
    """∂F/∂h by torch.func.jacrev, shaped (N, N) on the flattened state."""
    p = problem
    J = torch.func.jacrev(lambda h: p.fn(p.params, h, *p.inputs))(p.h_star)
    N = p.h_star.numel()
    return J.reshape(N, N)


def test_adjoint_identity(problem):
    ops = gs.JacobianOperators(problem)
    v, w = randn(*problem.h_star.shape, seed=1), randn(*problem.h_star.shape, seed=2)
    assert torch.allclose((ops.J(v) * w).sum(), (v * ops.JT(w)).sum(), rtol=1e-12)
    assert torch.allclose(
        (ops.identity_minus_J(v) * w).sum(), (v * ops.adjoint(w)).sum(), rtol=1e-12
    )
    lam = 0.3
    assert torch.allclose(
        (ops.damped(lam)(v) * w).sum(), (v * ops.damped_T(lam)(w)).sum(), rtol=1e-12
    )
    assert ops.vjps == 3 and ops.jvps == 3


def test_dense_matches_jacrev(problem):
    ops = gs.JacobianOperators(problem)
    ref = jac_reference(problem)
    assert torch.allclose(ops.J.dense(), ref, atol=1e-13)
    assert torch.allclose(ops.JT.dense(), ref.T, atol=1e-13)
    assert torch.allclose(
        ops.adjoint.dense(), torch.eye(ref.shape[0], dtype=DT) - ref.T, atol=1e-13
    )
    B = ops.damped_T(0.5).dense(chunk=7)  # chunking does not change the result
    assert torch.allclose(B, 0.5 * torch.eye(ref.shape[0], dtype=DT) + 0.5 * ref.T, atol=1e-13)


def test_per_sample_dense_blocks(problem):
    ops = gs.JacobianOperators(problem)
    ref = jac_reference(problem)
    blocks = ops.JT.dense(per_sample=True)
    samples, n = problem.h_star.shape
    assert blocks.shape == (samples, n, n)
    for s in range(samples):
        sl = slice(s * n, (s + 1) * n)
        assert torch.allclose(blocks[s], ref[sl, sl].T, atol=1e-13)
    # off-diagonal blocks are zero: samples are independent
    assert ref[:n, n:].abs().max() == 0


def test_param_jacobian_and_vjp(problem):
    ops = gs.JacobianOperators(problem)
    p = problem
    jac = torch.func.jacrev(lambda params: p.fn(params, p.h_star, *p.inputs))(p.params)
    N = p.h_star.numel()
    ref = torch.cat([jac[n].reshape(N, -1) for n in p.params], dim=1)
    assert torch.allclose(ops.param_jacobian_dense(), ref, atol=1e-13)
    v = randn(*p.h_star.shape, seed=3)
    grads, input_grads = ops.param_vjp(v)
    flat = torch.cat([g.reshape(-1) for g in grads.values()])
    assert torch.allclose(flat, ref.T @ v.reshape(-1), atol=1e-13)
    x_jac = torch.func.jacrev(lambda x: p.fn(p.params, p.h_star, x))(p.inputs[0]).reshape(N, -1)
    assert torch.allclose(input_grads[0].reshape(-1), x_jac.T @ v.reshape(-1), atol=1e-13)


def test_scipy_export_round_trips(problem):
    ops = gs.JacobianOperators(problem)
    A = ops.adjoint.to_scipy()
    N = problem.h_star.numel()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N)
    dense = ops.adjoint.dense().numpy()
    assert np.allclose(A.matvec(x), dense @ x, atol=1e-13)
    assert np.allclose(A.rmatvec(x), dense.T @ x, atol=1e-13)
    from scipy.sparse.linalg import gmres

    b = rng.standard_normal(N)
    sol, info = gmres(A, b, rtol=1e-12, atol=0.0)
    assert info == 0 and np.allclose(dense @ sol, b, atol=1e-9)


def test_linear_map_checks_shapes():
    A = gs.LinearMap(lambda v: v, torch.zeros(3), "I")
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        A(torch.zeros(4))
    with pytest.raises(NotImplementedError, match="no known transpose"):
        A.T  # noqa: B018
    with pytest.raises(ValueError, match="damping"):
        gs.JacobianOperators(solved_problem(TanhCell(d=3, n=2), randn(2, 2))).damped(0.0)
