"""The operator layer: algebra, counting, sample independence, dense and scipy export.

References: torch.func.jacrev (dense Jacobians), explicit matrices.
"""

import numpy as np
import pytest
import torch
from cases import DT, MLPCell, TanhCell, randn, solved_problem

import gradscope as gs
from gradscope.operators import (
    Counted,
    FunctionOperator,
    damped,
    jacobian_transpose,
    param_jacobian_dense,
    param_vjp,
)


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


def matrix_operator(M: torch.Tensor, name: str = "M") -> FunctionOperator:
    """An explicit matrix as an operator on 1-D vectors, with its transpose."""
    like = M.new_zeros(M.shape[0])
    return FunctionOperator(
        lambda v: M @ v,
        like,
        name,
        transpose=lambda: FunctionOperator(lambda v: M.T @ v, like, name + "ᵀ"),
    )


def test_adjoint_identity(problem):
    JT = Counted(jacobian_transpose(problem))
    J = JT.T
    v, w = randn(*problem.h_star.shape, seed=1), randn(*problem.h_star.shape, seed=2)
    assert torch.allclose((J(v) * w).sum(), (v * JT(w)).sum(), rtol=1e-12)
    I_J, I_JT = J.identity() - J, JT.identity() - JT
    assert torch.allclose((I_J(v) * w).sum(), (v * I_JT(w)).sum(), rtol=1e-12)
    lam = 0.3
    assert torch.allclose((damped(J, lam)(v) * w).sum(), (v * damped(JT, lam)(w)).sum(), rtol=1e-12)
    # counting is a wrapper: VJPs on JT, JVPs on its transpose, separately
    assert JT.count == 3 and J.count == 3


def test_dense_matches_jacrev(problem):
    JT = jacobian_transpose(problem)
    ref = jac_reference(problem)
    eye = torch.eye(ref.shape[0], dtype=DT)
    assert torch.allclose(JT.T.dense(), ref, atol=1e-13)
    assert torch.allclose(JT.dense(), ref.T, atol=1e-13)
    assert torch.allclose((JT.identity() - JT).dense(), eye - ref.T, atol=1e-13)
    B = damped(JT, 0.5).dense(chunk=7)  # chunking does not change the result
    assert torch.allclose(B, 0.5 * eye + 0.5 * ref.T, atol=1e-13)


def test_per_sample_dense_blocks(problem):
    JT = jacobian_transpose(problem)
    assert JT.independent_samples
    ref = jac_reference(problem)
    blocks = JT.dense(per_sample=True)
    samples, n = problem.h_star.shape
    assert blocks.shape == (samples, n, n)
    for s in range(samples):
        sl = slice(s * n, (s + 1) * n)
        assert torch.allclose(blocks[s], ref[sl, sl].T, atol=1e-13)
    # off-diagonal blocks are zero: samples are independent
    assert ref[:n, n:].abs().max() == 0


def test_param_jacobian_and_vjp(problem):
    p = problem
    jac = torch.func.jacrev(lambda params: p.fn(params, p.h_star, *p.inputs))(p.params)
    N = p.h_star.numel()
    ref = torch.cat([jac[n].reshape(N, -1) for n in p.params], dim=1)
    assert torch.allclose(param_jacobian_dense(p), ref, atol=1e-13)
    v = randn(*p.h_star.shape, seed=3)
    grads, input_grads = param_vjp(p, v)
    flat = torch.cat([g.reshape(-1) for g in grads.values()])
    assert torch.allclose(flat, ref.T @ v.reshape(-1), atol=1e-13)
    x_jac = torch.func.jacrev(lambda x: p.fn(p.params, p.h_star, x))(p.inputs[0]).reshape(N, -1)
    assert torch.allclose(input_grads[0].reshape(-1), x_jac.T @ v.reshape(-1), atol=1e-13)


def test_scipy_export_round_trips(problem):
    JT = jacobian_transpose(problem)
    adjoint = JT.identity() - JT
    A = adjoint.to_scipy()
    N = problem.h_star.numel()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N)
    dense = adjoint.dense().numpy()
    assert np.allclose(A.matvec(x), dense @ x, atol=1e-13)
    assert np.allclose(A.rmatvec(x), dense.T @ x, atol=1e-13)
    from scipy.sparse.linalg import gmres

    b = rng.standard_normal(N)
    sol, info = gmres(A, b, rtol=1e-12, atol=0.0)
    assert info == 0 and np.allclose(dense @ sol, b, atol=1e-9)


def test_algebra_matches_explicit_matrices():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(4, 4, generator=g, dtype=DT)
    N = torch.randn(4, 4, generator=g, dtype=DT)
    A, B = matrix_operator(M, "M"), matrix_operator(N, "N")
    eye = torch.eye(4, dtype=DT)
    assert torch.allclose((A + B).dense(), M + N)
    assert torch.allclose((A - 2.5 * B).dense(), M - 2.5 * N)
    assert torch.allclose((-A).dense(), -M)
    assert torch.allclose((A - B).T.dense(), (M - N).T)
    assert torch.allclose(damped(A, 0.25).dense(), 0.75 * eye + 0.25 * M)
    assert torch.allclose(damped(A, 0.25).T.dense(), 0.75 * eye + 0.25 * M.T)
    assert damped(A, 1.0) is A
    assert (A.identity() - A).name == "I − M"


def test_counted_counts_each_product_once():
    M = torch.diag(torch.tensor([0.5, 0.25], dtype=DT))
    A = Counted(matrix_operator(M))
    v = torch.ones(2, dtype=DT)
    (A.identity() - A)(v)
    damped(A, 0.5)(v)
    A.matmat(torch.ones(3, 2, dtype=DT))
    assert A.count == 1 + 1 + 3
    A.T(v)
    assert A.count == 5 and A.T.count == 1  # the transpose counts its own products


def test_sample_independence_is_decided_once_and_lazily():
    calls = []

    def coupled(v):  # each sample's output depends on the previous sample (a cumsum)
        calls.append(1)
        return v.cumsum(0)

    like = torch.zeros(5, 3, dtype=DT)
    from gradscope.operators import JacobianTranspose

    h = torch.zeros(5, 3, dtype=DT, requires_grad=True)
    op = JacobianTranspose(h.cumsum(0), h)
    assert not op.independent_samples  # the probe on sample 0 sees the leak into 1..4
    diag = JacobianTranspose(torch.tanh(h), h)
    assert diag.independent_samples
    # combinations inherit it without probing again
    assert not (op.identity() - op).independent_samples
    assert (diag.identity() - 0.5 * diag).independent_samples
    assert FunctionOperator(coupled, like, "C").independent_samples is False
    assert not calls


def test_operator_checks_shapes_and_transpose():
    A = FunctionOperator(lambda v: v, torch.zeros(3), "I")
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        A(torch.zeros(4))
    with pytest.raises(NotImplementedError, match="no known transpose"):
        A.T  # noqa: B018
    with pytest.raises(ValueError, match="damping"):
        damped(jacobian_transpose(solved_problem(TanhCell(d=3, n=2), randn(2, 2))), 0.0)
    with pytest.raises(TypeError, match="expected a callable"):
        FunctionOperator("not callable", torch.zeros(3))
    with pytest.raises(ValueError, match="cannot combine"):
        A + FunctionOperator(lambda v: v, torch.zeros(4), "I4")


def test_solver_refuses_per_sample_on_coupled_operator():
    like = torch.zeros(4, 3, dtype=DT)
    C = FunctionOperator(lambda v: v + 0.1 * v.roll(1, 0), like, "C")
    with pytest.raises(ValueError, match="needs independent samples"):
        gs.solvers.linear_solve(C, torch.ones(4, 3, dtype=DT), gs.solvers.GMRES(per_sample=True))
    sol = gs.solvers.linear_solve(C, torch.ones(4, 3, dtype=DT), gs.solvers.GMRES(rtol=1e-12))
    assert sol.converged and sol.residual_per_sample.numel() == 1
