"""The paper-reproduction scripts in analysis/ run in quick mode, pass, and write their outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_run import assert_quick_passes

pytestmark = pytest.mark.slow  # a subprocess per script


@pytest.mark.parametrize(
    ("script", "files"),
    [
        ("static_precision.py", ["cosines.csv", "summary.csv", "histograms.png"]),
        ("theorem3_bias_floor.py", ["floor.csv", "summary.csv", "bias_floor.png"]),
    ],
)
def test_quick_mode_passes_and_writes_outputs(script: str, files: list[str], tmp_path: Path):
    assert_quick_passes(script, tmp_path, files)
