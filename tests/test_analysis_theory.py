"""The theory analysis scripts run in --quick mode and PASS (outputs to a temp folder)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytestmark = pytest.mark.slow  # each script's quick mode: seconds

ANALYSIS = pathlib.Path(__file__).resolve().parent.parent / "analysis"
SCRIPTS = [
    "theorem1_sufficiency",
    "damping_bounds",
    "neumann_error",
    "spectral_accuracy",
    "solver_stress",
]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"analysis_{name}", ANALYSIS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_passes(name, tmp_path, monkeypatch):
    module = _load(name)
    monkeypatch.setattr(module, "OUT", tmp_path)  # keep the committed full-mode results
    assert module.main(["--quick"]) is True
    assert list(tmp_path.glob("*.csv")) and list(tmp_path.glob("*.png"))
