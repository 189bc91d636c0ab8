"""Run an analysis/ script in --quick mode in a subprocess (shared by the analysis tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path) -> subprocess.CompletedProcess:
    """``python analysis/<script> --quick --out <out>`` with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "analysis" / script), "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_quick_passes(script: str, out: Path, files: list[str]) -> None:
    """The script's --quick run exits 0, ends with PASS and writes each of ``files``."""
    result = run_quick(script, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "PASS"
    for name in files:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
