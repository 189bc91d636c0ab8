"""A Jacobian that is not finite at h* is reported, never handed to LAPACK.

F(h) = W·sqrt(|h|) at h* = 0 has an infinite derivative: every product with J is inf/NaN.
Before, the dense spectrum and check_theory aborted the whole process inside MKL
("Parameter 3 was incorrect on entry to DGEBAL", exit 134); the Arnoldi radius and the
dense norm raised torch/LAPACK errors. Each case runs in a subprocess, so that an abort
fails the test instead of killing pytest.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # one subprocess per case

ROOT = Path(__file__).resolve().parents[1]
SETUP = textwrap.dedent(
    """
    import math, torch, gradscope as gs
    W = torch.tensor([[0.5, 0.1], [0.0, 0.4]], dtype=torch.float64)
    fn = lambda p, h: p["W"] @ torch.sqrt(h.abs())
    problem = gs.FixedPointProblem.from_function(fn, {"W": W}, torch.zeros(2, dtype=torch.float64))
    """
)
ESTIMATES = {
    "arnoldi": "gs.spectral_radius(problem)",
    "dense_radius": "gs.spectral_radius(problem, gs.spectral.DenseSpectrum())",
    "scipy": "gs.spectral_radius(problem, gs.spectral.ScipyEigs())",
    "power": "gs.spectral_radius(problem, gs.spectral.PowerIteration())",
    "norm": "gs.spectral.spectral_norm(problem)",
    "dense_norm": "gs.spectral.spectral_norm(problem, gs.spectral.DenseSpectrum())",
    "smin": "gs.spectral.smallest_singular_value(problem)",
    "damped_power": "gs.spectral.damped_power_norm(problem, 0.5, 3)",
}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SETUP + code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("name", sorted(ESTIMATES))
def test_spectral_estimate_of_a_non_finite_jacobian_is_nan_and_not_converged(name):
    result = _run(f"est = {ESTIMATES[name]}\nprint(math.isfinite(est.value), est.converged)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"], result.stdout


def test_check_theory_says_the_jacobian_is_not_finite():
    result = _run(
        "try:\n    gs.check_theory(problem, gs.Neumann(3, 0.5))\n"
        "except ValueError as e:\n    print(e)\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gradscope.check_theory: the Jacobian J = ∂F/∂h at h* is not finite" in result.stdout
