"""The monitor benchmark's quick mode runs and passes (analysis/bench_monitor.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # the benchmark in a subprocess


def test_bench_monitor_quick(tmp_path):
    pytest.importorskip("sklearn")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "analysis" / "bench_monitor.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("PASS")
    for name in ("overhead.csv", "memory.csv", "bench_monitor.png"):
        assert (tmp_path / name).stat().st_size > 0
