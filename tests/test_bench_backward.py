"""The backward benchmark's quick mode runs, writes its CSV and PNG, and passes its checks."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark's quick mode

SCRIPT = Path(__file__).resolve().parents[1] / "analysis" / "bench_backward.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_backward", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_backward"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_mode(tmp_path, capsys):
    bench = load()
    assert bench.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "PASS" in out
    with open(tmp_path / "bench_backward_quick.csv") as fh:
        rows = list(csv.DictReader(fh))
    methods = {r["method"] for r in rows}
    assert {"gs Exact GMRES per-sample", "gs Unrolled(5, 0.5)", "gs OneStep"} <= methods
    assert (tmp_path / "bench_backward_quick.png").stat().st_size > 0
    for r in rows:
        assert float(r["backward_ms"]) > 0
        # ρ(J) was calibrated to the requested value (max over samples).
        assert abs(float(r["rho_max"]) - float(r["rho_target"])) < 0.02
        if r["method"] == "gs Exact GMRES per-sample":  # residual column: max per sample
            assert r["converged"] == "True" and float(r["residual"]) <= 1e-8
            assert float(r["cosine"]) > 1 - 1e-8
