import pytest
import torch
from cases import DT, LinearCell, TanhCell, randn, scaled_matrix

import gradscope as gs


@pytest.mark.parametrize(
    "method", [gs.fixed_point.Anderson(), gs.fixed_point.Anderson(memory=3, mixing=0.8), gs.fixed_point.Picard(), gs.fixed_point.Picard(0.5)]
)
@pytest.mark.parametrize("per_sample", [True, False])
def test_converges_to_closed_form(method, per_sample):
    cell = LinearCell(scaled_matrix(6, 0.8, kind="symmetric"))
    x = randn(5, 3)
    fp = gs.find_fixed_point(
        cell,
        x,
        h0=torch.zeros(5, 6, dtype=DT),
        rtol=1e-12,
        max_steps=1000,
        method=method,
        per_sample=per_sample,
    )
    assert fp.converged and fp.residual <= 1e-12
    assert torch.allclose(fp.value, cell.equilibrium(x), atol=1e-10)
    assert fp.steps == len(fp.trace) or fp.steps + 1 == len(fp.trace)
    assert fp.residual_per_sample.shape == (5,)


def test_anderson_beats_picard_near_rho_one():
    cell = LinearCell(scaled_matrix(8, 0.97, kind="symmetric"))
    x = randn(4, 3)
    h0 = torch.zeros(4, 8, dtype=DT)
    a = gs.find_fixed_point(cell, x, h0=h0, rtol=1e-10, max_steps=3000)
    p = gs.find_fixed_point(cell, x, h0=h0, rtol=1e-10, max_steps=3000, method=gs.fixed_point.Picard())
    assert a.converged and p.converged
    assert a.steps < p.steps / 3


def test_infers_state_shape_from_module_parameters():
    cell = TanhCell(d=7, n=4)
    fp = gs.find_fixed_point(cell, randn(3, 4), rtol=1e-12)
    assert fp.value.shape == (3, 7) and fp.converged


def test_uninferable_shape_and_bad_arguments():
    with pytest.raises(ValueError, match="no state shape could be inferred"):
        gs.find_fixed_point(
            lambda h, x: torch.tanh(h @ torch.ones(9, 9, dtype=DT) + x.sum()), randn(2, 3)
        )
    with pytest.raises(ValueError, match="rtol"):
        gs.find_fixed_point(lambda h: h, h0=torch.zeros(2), rtol=-1.0)
    with pytest.raises(ValueError, match="max_steps"):
        gs.find_fixed_point(lambda h: h, h0=torch.zeros(2), max_steps=0)
    with pytest.raises(TypeError, match="expected gradscope.fixed_point.Anderson"):
        gs.find_fixed_point(lambda h: h, h0=torch.zeros(2), method="anderson")
    with pytest.raises(ValueError, match="damping"):
        gs.fixed_point.Picard(damping=1.5)
    with pytest.raises(ValueError, match="memory"):
        gs.fixed_point.Anderson(memory=0)
    with pytest.raises(TypeError, match="floating"):
        gs.find_fixed_point(lambda h: h, h0=torch.zeros(2, dtype=torch.int64))


@pytest.mark.parametrize("method", [gs.fixed_point.Anderson(), gs.fixed_point.Picard(0.5)], ids=["Anderson", "Picard"])
def test_mismatched_state_and_model_are_explained(method):
    cell, x = TanhCell(d=5, n=4), randn(3, 4)
    with pytest.raises(
        TypeError, match=r"inputs\[0\] has dtype torch.float64 but h0 has torch.float32"
    ):
        gs.find_fixed_point(cell, x, h0=torch.zeros(3, 5), method=method)
    with pytest.raises(ValueError, match=r"F returned shape \(3, 2\) for h0 of shape \(3, 5\)"):
        gs.find_fixed_point(lambda h, x: h[:, :2], x, h0=torch.zeros(3, 5, dtype=DT), method=method)
    with pytest.raises(
        ValueError, match=r"calling F with h0 of shape \(3, 6\) .* failed with RuntimeError"
    ):
        gs.find_fixed_point(cell, x, h0=torch.zeros(3, 6, dtype=DT), method=method)


def test_divergent_map_warns_or_raises_and_keeps_best_finite_iterate():
    f = lambda h: 3.0 * h + 1.0
    with pytest.warns(gs.ConvergenceWarning, match="not converged"):
        fp = gs.find_fixed_point(f, h0=torch.zeros(3, dtype=DT), method=gs.fixed_point.Picard(), max_steps=50)
    assert not fp.converged and torch.isfinite(fp.value).all()
    with pytest.raises(gs.ConvergenceError):
        gs.find_fixed_point(
            f, h0=torch.zeros(3, dtype=DT), method=gs.fixed_point.Picard(), max_steps=50, strict=True
        )


def test_damping_rescues_a_map_with_negative_eigenvalue():
    # μ = −3 (docs/explanation/damping.rst (theory-damping)): damped iteration converges for λ < 0.5 only.
    f = lambda h: -3.0 * h + 1.0
    fp = gs.find_fixed_point(
        f, h0=torch.zeros(2, dtype=DT), method=gs.fixed_point.Picard(0.4), rtol=1e-12, max_steps=500
    )
    assert fp.converged and torch.allclose(fp.value, torch.full((2,), 0.25, dtype=DT))


def test_a_map_that_writes_into_its_state_is_refused_with_the_fix():
    def inplace(h, x):
        h.mul_(0.5)  # writes into the state gradscope shares with every product
        return h + x

    x = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"gradscope.find_fixed_point: F wrote into h0 in place"):
        gs.find_fixed_point(inplace, x, h0=torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"FixedPointProblem.from_function: F wrote into h\* in place"):
        gs.FixedPointProblem.from_function(
            lambda p, h, x: inplace(h, x), {}, torch.full((2, 3), 2.0, dtype=torch.float64), x
        )


def test_an_empty_batch_is_refused_with_the_call_s_message():
    x = torch.ones(0, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"gradscope.find_fixed_point: h0 has shape \(0, 3\).*empty batch"):
        gs.find_fixed_point(lambda h, x: 0.5 * h + x, x, h0=torch.zeros(0, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"FixedPointProblem.from_function: h\* has shape \(0, 3\)"):
        gs.FixedPointProblem.from_function(lambda p, h, x: 0.5 * h + x, {}, torch.zeros(0, 3, dtype=torch.float64), x)
