"""The training analyses in analysis/ (issue 7) run in quick mode, pass, and write their outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "analysis" / script), "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


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
