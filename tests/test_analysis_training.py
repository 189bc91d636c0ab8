"""The training analyses in analysis/ (issue 7) run in quick mode, pass, and write their outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_run import run_quick


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
    result = run_quick(script, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "PASS"
    for name in files:
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 0, name
