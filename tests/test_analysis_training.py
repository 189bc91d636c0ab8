"""The training analyses in analysis/ (issue 7) run in quick mode, pass, and write their outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_run import assert_quick_passes

pytestmark = pytest.mark.slow  # a subprocess per script


@pytest.mark.parametrize(
    ("script", "files"),
    [
        (
            "dynamic_precision.py",
            ["observations.csv", "summary.csv", "by_rho.csv", "dynamic_precision.png"],
        ),
        ("ablation.py", ["runs.csv", "spectra.csv", "summary.csv", "ablation.png"]),
        ("bench_speed.py", ["times.csv", "summary.csv", "bench_speed.png"]),
    ],
)
def test_quick_mode_passes_and_writes_outputs(script: str, files: list[str], tmp_path: Path):
    pytest.importorskip("sklearn")
    assert_quick_passes(script, tmp_path, files)
