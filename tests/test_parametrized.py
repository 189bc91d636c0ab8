"""Parametrized weights: gradients with respect to the real leaf parameters, no side effects.

Three ways a weight is derived from parameters, each checked against a hand-written
reference (the normalised weight computed explicitly from the leaf parameters, the cell
run on it, differentiated with torch.func at a fixed point solved by plain iteration):

* TorchDEQ's ``apply_norm`` (weight norm, spectral norm): ``weight`` is a cached plain
  attribute that only ``reset_norm`` recomputes; gradscope recomputes it inside F;
* ``torch.nn.utils.parametrize`` (``parametrizations.weight_norm``): recomputed in the
  forward by torch;
* the classic ``torch.nn.utils.weight_norm`` hook: recomputed in a forward pre-hook that
  stores ``weight`` on the module (gradscope puts the old one back).

The exact gradient must match the implicit-function reference (dense, torch.func.jacrev)
and a central finite difference that re-solves the fixed point; the phantom gradients
(Unrolled and Neumann) must match theirs. The module must be bit-identical afterwards.
"""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn

import gradscope as gs
from gradscope.estimators.estimate import run_estimator
from gradscope.operators import jacobian_transpose, param_jvp
from gradscope.parametrized import UnreachedParameterWarning, functional_call, normed_weights

DT = torch.float64
D, N, B = 6, 3, 4
KINDS = ["torchdeq_weight_norm", "torchdeq_spectral_norm", "parametrize", "classic_hook"]


class Cell(nn.Module):
    """F(h, x) = tanh(W h + U x + b)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Linear(D, D, bias=False, dtype=DT)
        self.U = nn.Linear(N, D, dtype=DT)
        with torch.no_grad():
            W = torch.randn(D, D, generator=g, dtype=DT)
            scale = 0.25 + 0.2 * torch.rand(D, 1, generator=g, dtype=DT)  # row norms < 0.45
            self.W.weight.copy_(W / W.norm(dim=1, keepdim=True) * scale)
            self.U.weight.copy_(torch.randn(D, N, generator=g, dtype=DT) / N**0.5)
            self.U.bias.copy_(0.1 * torch.randn(D, generator=g, dtype=DT))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(h) + self.U(x))


# ---------------------------------------------------------------------- the mechanisms
def _row_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g · v / ‖v‖`` with the norm over each row (dim 0 kept), written out."""
    return v * (g / torch.sqrt((v * v).sum(dim=1, keepdim=True)))


def make(kind: str, seed: int = 0):
    """A normed cell and ``weight(p, layer)``: its normalised weight from the leaf params."""
    cell = Cell(seed)
    if kind == "torchdeq_weight_norm":
        norm = pytest.importorskip("torchdeq.norm")
        norm.apply_norm(cell, "weight_norm")
        norm.reset_norm(cell)

        def weight(p, layer):
            return _row_weight_norm(p[f"{layer}.weight_g"], p[f"{layer}.weight_v"])

    elif kind == "torchdeq_spectral_norm":
        norm = pytest.importorskip("torchdeq.norm")
        torch.manual_seed(seed)  # the random start of the power iteration
        norm.apply_norm(cell, "spectral_norm")
        cell.to(DT)  # TorchDEQ makes weight_g in the default dtype
        g = torch.Generator().manual_seed(seed + 7)
        with torch.no_grad():
            cell.W.weight_g.copy_(0.3 + 0.2 * torch.rand(D, 1, generator=g, dtype=DT))
            cell.U.weight_g.copy_(0.8 + 0.4 * torch.rand(D, 1, generator=g, dtype=DT))
        norm.reset_norm(cell)  # training mode: one power iteration, then weight cached
        buffers = {n: b.clone() for n, b in cell.named_buffers()}

        def weight(p, layer):
            w = p[f"{layer}.weight_orig"]
            u, v = buffers[f"{layer}.weight_u"], buffers[f"{layer}.weight_v"]
            return w * (p[f"{layer}.weight_g"] / (u @ w @ v))

    elif kind == "parametrize":
        for layer in (cell.W, cell.U):
            torch.nn.utils.parametrizations.weight_norm(layer)

        def weight(p, layer):
            pre = f"{layer}.parametrizations.weight"
            return _row_weight_norm(p[f"{pre}.original0"], p[f"{pre}.original1"])

    elif kind == "classic_hook":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of parametrize
            for layer in (cell.W, cell.U):
                torch.nn.utils.weight_norm(layer)

        def weight(p, layer):
            return _row_weight_norm(p[f"{layer}.weight_g"], p[f"{layer}.weight_v"])

    else:
        raise AssertionError(kind)
    return cell, weight


def reference_F(weight):
    def F(p, h, x):
        return torch.tanh(h @ weight(p, "W").T + x @ weight(p, "U").T + p["U.bias"])

    return F


def leaf_params(cell):
    return {n: p.detach().clone() for n, p in cell.named_parameters()}


def solve(F, p, x, steps=400):
    h = torch.zeros(B, D, dtype=DT)
    for _ in range(steps):
        h = F(p, h, x)
    return h


def case(kind, seed=0):
    cell, weight = make(kind, seed)
    F = reference_F(weight)
    p = leaf_params(cell)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(B, N, generator=g, dtype=DT)
    c = torch.randn(B, D, generator=g, dtype=DT)
    with torch.no_grad():
        h = solve(F, p, x)
        # the hand-written F is the module's F (with its cached/hooked weights as they are)
        assert torch.allclose(cell(h, x), F(p, h, x), rtol=0, atol=1e-14)
        assert float((F(p, h, x) - h).abs().max()) < 1e-15
    return cell, F, p, x, h, c


def dense_jacobians(F, p, h, x):
    n = h.numel()
    Jh = torch.func.jacrev(lambda h: F(p, h, x))(h).reshape(n, n)
    Jp = torch.func.jacrev(lambda p: F(p, h, x))(p)
    return Jh, {k: v.reshape(n, -1) for k, v in Jp.items()}


def from_adjoint(Jp, p, u):
    return {k: (u @ Jp[k]).reshape(p[k].shape) for k in p}


def reference_exact(F, p, h, x, c):
    Jh, Jp = dense_jacobians(F, p, h, x)
    eye = torch.eye(h.numel(), dtype=DT)
    u = torch.linalg.solve((eye - Jh).T, c.reshape(-1))
    return from_adjoint(Jp, p, u)


def reference_neumann(F, p, h, x, c, k, lam):
    Jh, Jp = dense_jacobians(F, p, h, x)
    B_T = (1 - lam) * torch.eye(h.numel(), dtype=DT) + lam * Jh.T
    term = c.reshape(-1)
    v = term
    for _ in range(k - 1):
        term = B_T @ term
        v = v + term
    return from_adjoint(Jp, p, lam * v)


def reference_unrolled(F, p, h, x, c, k, lam):
    def unrolled(p):
        z = h
        for _ in range(k):
            z = (1 - lam) * z + lam * F(p, z, x)
        return z

    _, vjp = torch.func.vjp(unrolled, p)
    return vjp(c)[0]


def rel_err(a, b):
    keys = list(b)
    fa = torch.cat([a[k].reshape(-1) for k in keys])
    fb = torch.cat([b[k].reshape(-1) for k in keys])
    return float((fa - fb).norm() / fb.norm())


def estimate(cell, h, x, c, estimator):
    problem = gs.FixedPointProblem.from_module(cell, h, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UnreachedParameterWarning, no FixedPointWarning
        est = gs.estimate_gradient(problem, c, estimator)
    assert est.unreached == ()
    return est


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", KINDS)
def test_exact_gradient_of_leaf_parameters_matches_the_reference(kind):
    cell, F, p, x, h, c = case(kind)
    est = estimate(cell, h, x, c, gs.Exact(gs.solvers.Dense()))
    assert list(est.grads) == list(p)  # keyed like named_parameters()
    ref = reference_exact(F, p, h, x, c)
    assert rel_err(est.grads, ref) <= 1e-10
    for name in p:  # every leaf is reached, none is silently zero
        assert float(ref[name].norm()) > 0
        assert rel_err({name: est.grads[name]}, {name: ref[name]}) <= 1e-9, name


@pytest.mark.parametrize("kind", KINDS)
def test_exact_gradient_matches_a_central_difference_that_resolves_the_fixed_point(kind):
    cell, F, p, x, h, c = case(kind)
    est = estimate(cell, h, x, c, gs.Exact(gs.solvers.Dense()))
    g = torch.Generator().manual_seed(5)
    direction = {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in p.items()}
    eps = 1e-5

    def loss(t):
        q = {k: p[k] + t * direction[k] for k in p}
        with torch.no_grad():
            return float((c * solve(F, q, x)).sum())

    fd = (loss(eps) - loss(-eps)) / (2 * eps)
    analytic = float(sum((est.grads[k] * direction[k]).sum() for k in p))
    assert abs(fd - analytic) <= 1e-6 * abs(analytic)


@pytest.mark.parametrize("kind", KINDS)
def test_phantom_gradients_match_their_references(kind):
    cell, F, p, x, h, c = case(kind)
    k, lam = 5, 0.5
    upg = estimate(cell, h, x, c, gs.Unrolled(k, lam))
    assert rel_err(upg.grads, reference_unrolled(F, p, h, x, c, k, lam)) <= 1e-12
    npg = estimate(cell, h, x, c, gs.Neumann(k, lam))
    assert rel_err(npg.grads, reference_neumann(F, p, h, x, c, k, lam)) <= 1e-12
    one = estimate(cell, h, x, c, gs.OneStep())
    assert rel_err(one.grads, reference_neumann(F, p, h, x, c, 1, 1.0)) <= 1e-12


@pytest.mark.parametrize("kind", KINDS)
def test_forward_products_match_the_reference(kind):
    # torch._weight_norm (parametrize, classic hook) has no forward-mode rule: J v and
    # F_θ z then go through two reverse passes.
    cell, F, p, x, h, c = case(kind)
    problem = gs.FixedPointProblem.from_module(cell, h, x)
    Jh, Jp = dense_jacobians(F, p, h, x)
    J = jacobian_transpose(problem).T
    for v in (c, torch.ones_like(c)):  # the second call reuses the recorded reverse pass
        assert torch.allclose(J(v).reshape(-1), Jh @ v.reshape(-1), rtol=0, atol=1e-13)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(sum(q.numel() for q in p.values()), generator=g, dtype=DT)
    expected = torch.cat([Jp[k] for k in p], dim=1) @ z
    assert torch.allclose(param_jvp(problem, z).reshape(-1), expected, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------- no side effects
def snapshot(cell):
    """Everything of the module that gradscope must leave as it was."""
    return {
        "state": {k: v.clone() for k, v in cell.state_dict(keep_vars=True).items()},
        "objects": {k: v for k, v in cell.state_dict(keep_vars=True).items()},
        "attrs": {
            (name, a): v
            for name, sub in cell.named_modules()
            for a, v in vars(sub).items()
            if isinstance(v, torch.Tensor)
        },
        "attr_values": {
            (name, a): v.detach().clone()
            for name, sub in cell.named_modules()
            for a, v in vars(sub).items()
            if isinstance(v, torch.Tensor)
        },
        "grad_fns": {
            (name, a): v.grad_fn
            for name, sub in cell.named_modules()
            for a, v in vars(sub).items()
            if isinstance(v, torch.Tensor)
        },
        "hooks": {
            name: (
                dict(sub._forward_pre_hooks),
                dict(sub._forward_hooks),
                dict(sub._backward_hooks),
                dict(sub._state_dict_hooks),
            )
            for name, sub in cell.named_modules()
        },
        "modules": dict(cell.named_modules()),
        "parametrizations": {
            name: [(type(m), id(m)) for m in sub.parametrizations.weight]
            for name, sub in cell.named_modules()
            if torch.nn.utils.parametrize.is_parametrized(sub)
        },
        "weights": {name: sub.weight.detach().clone() for name, sub in (("W", cell.W), ("U", cell.U))},
        "grads": {n: p.grad for n, p in cell.named_parameters()},
    }


def bits(t):
    return t.detach().contiguous().view(torch.int64)


def assert_unchanged(before, after):
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert after["objects"][k] is before["objects"][k], k
        assert torch.equal(bits(after["state"][k]), bits(before["state"][k])), k
    assert after["attrs"].keys() == before["attrs"].keys()
    for k, v in before["attrs"].items():
        assert after["attrs"][k] is v, k  # the same tensor objects, not gradscope's
        assert after["grad_fns"][k] is before["grad_fns"][k], k
        assert torch.equal(bits(after["attr_values"][k]), bits(before["attr_values"][k])), k
    assert after["hooks"] == before["hooks"]
    assert after["modules"] == before["modules"]
    assert after["parametrizations"] == before["parametrizations"]
    for k, w in before["weights"].items():
        assert torch.equal(bits(after["weights"][k]), bits(w)), k
    assert all(g is None for g in after["grads"].values())


@pytest.mark.parametrize("kind", KINDS)
def test_module_is_bit_identical_after_problem_and_estimates(kind):
    cell, F, p, x, h, c = case(kind)
    with torch.no_grad():
        out = cell(h, x)
    before = snapshot(cell)
    problem = gs.FixedPointProblem.from_module(cell, h, x)
    for estimator in (gs.Exact(), gs.Unrolled(3, 0.5), gs.Neumann(3, 0.5), gs.OneStep()):
        gs.estimate_gradient(problem, c, estimator)
    JT = jacobian_transpose(problem)
    JT.T(c)  # forward mode through the cell (torch.func.jvp)
    param_jvp(problem, torch.ones(sum(q.numel() for q in p.values()), dtype=DT))
    assert_unchanged(before, snapshot(cell))
    with torch.no_grad():  # and the module computes what it did, to the bit
        assert torch.equal(bits(cell(h, x)), bits(out))


def test_classic_hook_leaves_its_own_weight_in_place():
    # Without the restore, the hook's setattr leaves a weight computed from gradscope's
    # aliases (with their graph) on the module.
    cell, F, p, x, h, c = case("classic_hook")
    weight = vars(cell.W)["weight"]
    problem = gs.FixedPointProblem.from_module(cell, h, x)
    gs.estimate_gradient(problem, c, gs.Unrolled(2, 1.0))
    assert vars(cell.W)["weight"] is weight


def test_functional_call_restores_attributes_a_forward_sets():
    class Caching(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, dtype=DT)
            self.last = torch.zeros(2, dtype=DT)

        def forward(self, h):
            out = self.lin(h)
            self.last = out  # overwrites an attribute
            self.fresh = out * 2  # creates one
            return out

    m = Caching()
    last = m.last
    params = {n: q.detach().requires_grad_(True) for n, q in m.named_parameters()}
    functional_call(m, params, (torch.ones(2, dtype=DT),))
    assert m.last is last and "fresh" not in vars(m)


def test_a_registered_norm_of_another_kind_is_recomputed_by_its_call():
    class Double:  # the interface TorchDEQ's register_norm expects: __call__(module)
        names, dims = ["weight"], [0]

        def __call__(self, module):
            module.weight = 2 * module.weight_v

    lin = nn.Linear(2, 2, bias=False, dtype=DT)
    w = lin.weight.detach().clone()
    del lin._parameters["weight"]
    lin.register_parameter("weight_v", nn.Parameter(w))
    lin._deq_norm = Double()
    lin._deq_norm(lin)
    v = torch.randn(2, 2, dtype=DT)
    out = normed_weights(lin, {"weight_v": v})
    assert list(out) == ["weight"] and torch.equal(out["weight"], 2 * v)
    assert torch.equal(lin.weight, 2 * w)


def test_torchdeq_norms_are_recognised_without_importing_torchdeq():
    import gradscope.parametrized as gp

    class WeightNorm:  # stands in for torchdeq.norm.weight_norm.WeightNorm
        __module__ = "torchdeq.norm.weight_norm"

    class Sub(WeightNorm):
        pass

    assert gp._torchdeq_kind(Sub()) == "WeightNorm"
    assert gp._torchdeq_kind(object()) is None
    loaded = "torchdeq" in sys.modules
    lin = nn.Linear(2, 2, dtype=DT)
    normed_weights(lin, dict(lin.named_parameters()))
    assert ("torchdeq" in sys.modules) == loaded


def test_stale_weights_after_a_parameter_change_show_as_an_inexact_fixed_point():
    # TorchDEQ's forward reads the weight cached at the last reset_norm; gradscope's F
    # recomputes it from the current parameters. An h* solved with a stale cache is
    # not a fixed point of that F, and the residual check says so.
    cell, F, p, x, h, c = case("torchdeq_weight_norm")
    with torch.no_grad():
        cell.W.weight_g.mul_(1.5)  # an optimiser step without reset_norm
    with pytest.warns(gs.FixedPointWarning):
        gs.FixedPointProblem.from_module(cell, h, x)


# ---------------------------------------------------------------------- unreached parameters
class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3, dtype=DT)
        self.unused = nn.Parameter(torch.ones(2, dtype=DT))
        with torch.no_grad():
            self.lin.weight.mul_(0.2)

    def forward(self, h):
        return torch.tanh(self.lin(h))


def _unused_problem():
    cell = WithUnused()
    h = torch.zeros(3, dtype=DT)
    with torch.no_grad():
        for _ in range(200):
            h = cell(h)
    return gs.FixedPointProblem.from_module(cell, h)


@pytest.mark.parametrize(
    "estimator", [gs.Exact(), gs.Unrolled(3, 0.5), gs.Neumann(3, 0.5), gs.OneStep()]
)
def test_an_unused_parameter_is_listed_and_warned_once(estimator):
    problem = _unused_problem()
    c = torch.ones(3, dtype=DT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = gs.estimate_gradient(problem, c, estimator)
    unreached = [w for w in caught if issubclass(w.category, UnreachedParameterWarning)]
    assert len(unreached) == 1 and len(caught) == 1
    assert "'unused'" in str(unreached[0].message)
    assert unreached[0].filename == __file__  # points at the caller
    assert est.unreached == ("unused",)
    assert torch.equal(est.grads["unused"], torch.zeros(2, dtype=DT))
    assert float(est.grads["lin.weight"].norm()) > 0
    assert "unreached=['unused']" in repr(est)


def test_run_estimator_lists_without_warning_and_a_chosen_subset_is_clean():
    problem = _unused_problem()
    c = torch.ones(3, dtype=DT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = run_estimator(problem, c, gs.Exact())
    assert est.unreached == ("unused",)
    chosen = gs.FixedPointProblem.from_module(
        problem.module, problem.h_star, params=["lin.weight", "lin.bias"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gs.estimate_gradient(chosen, c).unreached == ()


def test_from_function_with_an_unused_parameter():
    W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=DT)
    problem = gs.FixedPointProblem.from_function(
        lambda p, h: p["W"] @ h, {"W": W, "b": torch.ones(2, dtype=DT)}, torch.zeros(2, dtype=DT)
    )
    with pytest.warns(UnreachedParameterWarning, match=r"\['b'\]"):
        est = gs.estimate_gradient(problem, torch.ones(2, dtype=DT))
    assert est.unreached == ("b",)
    assert gs.estimators.GradientEstimate.from_grads({"W": W}).unreached == ()


@pytest.mark.parametrize("kind", ["torchdeq_weight_norm", "torchdeq_spectral_norm"])
def test_the_old_stale_weight_call_would_have_been_caught(kind):
    # The call gradscope used to make: functional_call swaps weight_g/weight_v (or
    # weight_orig/weight_g) but the forward reads the cached weight.
    cell, F, p, x, h, c = case(kind)
    params = {n: q for n, q in cell.named_parameters()}

    def old_fn(q, h, x):
        return torch.func.functional_call(cell, q, (h, x))

    old = gs.FixedPointProblem.from_function(old_fn, params, h, x)
    normed = tuple(n for n in params if n != "U.bias")
    # the stale cached weight still hangs on the module's real parameters: F's graph reaches
    # them, and that is caught as well (CapturedTensorWarning)
    with pytest.warns(gs.CapturedTensorWarning, match="not among its params"):
        with pytest.warns(UnreachedParameterWarning) as caught:
            est = gs.estimate_gradient(old, c, gs.Exact(gs.solvers.Dense()))
    unreached = [w for w in caught if issubclass(w.category, UnreachedParameterWarning)]
    assert len(unreached) == 1
    assert est.unreached == normed
    for name in normed:
        assert name in str(unreached[0].message)
        assert torch.equal(est.grads[name], torch.zeros_like(p[name]))
    exact = estimate(cell, h, x, c, gs.Exact(gs.solvers.Dense()))  # the fix: nothing unreached
    assert rel_err(exact.grads, reference_exact(F, p, h, x, c)) <= 1e-10
    assert rel_err(est.grads, exact.grads) > 0.1


def test_check_ascent_matrix_free_unrolled_on_torch_weight_norm():
    # torch._weight_norm has no forward-AD rule: the unrolled transpose falls back to two
    # reverse passes; the matrix-free ‖E‖ agrees with the dense one
    torch.manual_seed(0)

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(3, 3))

        def forward(self, h, x):
            return torch.tanh(0.4 * self.lin(h) + x)

    cell = Cell().double()
    x = torch.randn(1, 3, dtype=torch.float64)
    fp = gs.find_fixed_point(cell, x, h0=torch.zeros(1, 3, dtype=torch.float64), rtol=1e-13)
    problem = gs.FixedPointProblem.from_module(cell, fp.value, x)
    free = gs.theory.check_ascent(problem, gs.Unrolled(3, 0.5), dense=False)
    dense = gs.theory.check_ascent(problem, gs.Unrolled(3, 0.5), dense=True)
    assert abs(free.error_norm - dense.error_norm) <= 1e-6 * max(dense.error_norm, 1e-12) + 1e-12
