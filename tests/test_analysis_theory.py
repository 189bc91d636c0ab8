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


def test_quick_mode_never_writes_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ANALYSIS))
    from outputs import output_folder

    committed = tmp_path / "results"
    quick = output_folder(None, True, committed, "x")
    assert quick != committed and not committed.exists() and quick.is_dir()
    assert output_folder(None, False, committed, "x") == committed
    assert output_folder(tmp_path / "mine", True, committed, "x") == tmp_path / "mine"


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_passes(name, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ANALYSIS))  # the scripts import analysis/outputs.py
    module = _load(name)
    assert module.main(["--quick", "--out", str(tmp_path)]) is True
    assert list(tmp_path.glob("*.csv")) and list(tmp_path.glob("*.png"))
