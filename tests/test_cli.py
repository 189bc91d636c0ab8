"""The command line: demo, sweep, check; exit codes and messages."""

import json
import subprocess
import sys
import textwrap

import pytest

from gradscope.cli import main, parse_estimators


@pytest.mark.slow  # a subprocess: a fresh interpreter imports torch
def test_help_lists_examples():
    out = subprocess.run(
        [sys.executable, "-m", "gradscope", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "examples:" in out.stdout and "gradscope check" in out.stdout


@pytest.mark.slow  # the demo end to end: training, monitor, figures
def test_demo_quick_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "Neumann(5, 0.5) *" in text and "ρ(J)" in text
    for name in (
        "metrics.csv",
        "summary.md",
        "summary.json",
        "cosine.png",
        "jacobian.png",
        "spectrum.png",
        "dynamic_precision.png",
    ):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.6  # chance is 0.1: real learning on real digits
    assert "![cosine](cosine.png)" in (tmp_path / "summary.md").read_text()
    names = {r["estimator"] for r in summary["estimators"]}
    assert names == {"Neumann(5, 0.5)", "Unrolled(5, 0.5)", "OneStep"}
    assert all(0.5 < r["cosine_median"] <= 1 for r in summary["estimators"])


@pytest.mark.slow
def test_demo_is_deterministic_with_a_seed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        main(["demo", "--quick", "--steps", "12", "--every", "6", "--out", str(a), "--quiet"]) == 0
    )
    assert (
        main(["demo", "--quick", "--steps", "12", "--every", "6", "--out", str(b), "--quiet"]) == 0
    )
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert sa["final_loss"] == sb["final_loss"] and sa["test_accuracy"] == sb["test_accuracy"]


def test_sweep_writes_csv_and_heatmaps(tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--rho",
            "0.6",
            "--width",
            "6",
            "--batch",
            "2",
            "--steps",
            "1,3",
            "--dampings",
            "0.5,1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "Neumann: cosine" in text and "ρ(J) = 0.6" in text
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 1 + 2 * 2 * 2
    assert (tmp_path / "sweep_neumann_cosine.png").exists()
    code = main(
        [
            "sweep",
            "--rho",
            "0.6",
            "--width",
            "6",
            "--batch",
            "2",
            "--steps",
            "2",
            "--dampings",
            "1",
            "--json",
        ]
    )
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 2 and {r["method"] for r in rows} == {"Unrolled", "Neumann"}


FACTORY = """
import torch

def seeded(layer, g):  # nn.Linear's own initialisation, drawn from g
    torch.nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=g)
    bound = layer.weight.shape[1] ** -0.5
    torch.nn.init.uniform_(layer.bias, -bound, bound, generator=g)
    return layer

class Cell(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = seeded(torch.nn.Linear(4, 4), g)
        self.inj = seeded(torch.nn.Linear(3, 4), g)
        with torch.no_grad():
            self.lin.weight.mul_(0.5)

    def forward(self, h, x):
        return torch.tanh(self.lin(h) + self.inj(x))

def make():
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return {"cell": Cell().double(), "inputs": x, "loss": lambda h: (h ** 2).sum()}

def make_tuple():
    cell = Cell().double()
    return cell, torch.ones(1, 3, dtype=torch.float64)

class Flip(torch.nn.Module):
    # F(h) = -3 h + x: undamped NPG with k = 2 has u = -2g while u* = g / 4.
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(-3.0, dtype=torch.float64))
    def forward(self, h, x):
        return self.a * h + x

def make_violation():
    x = torch.ones(1, 1, dtype=torch.float64)
    return {"cell": Flip(), "inputs": x, "h_star": x / 4, "loss": lambda h: h.sum()}

def make_bad():
    return 42

def fn(p, h, x):
    return torch.tanh(h @ p["W"].T + x @ p["U"].T)

def make_function():
    g = torch.Generator().manual_seed(2)
    params = {"W": 0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64),
              "U": torch.randn(4, 3, generator=g, dtype=torch.float64)}
    x = torch.randn(2, 3, generator=g, dtype=torch.float64)
    return {"cell": fn, "params": params, "inputs": x, "h0": torch.zeros(2, 4, dtype=torch.float64),
            "loss": lambda h: (h ** 2).sum()}

def make_function_without_params():
    return {"cell": fn, "inputs": torch.ones(1, 3, dtype=torch.float64)}

def make_not_a_cell():
    return {"cell": 42, "inputs": torch.ones(1, 3)}

def make_scalar_inputs():
    return {"cell": Cell().double(), "inputs": 3}

def make_bad_loss():
    return {"cell": Cell().double(), "inputs": torch.ones(1, 3, dtype=torch.float64), "loss": 5}

def make_long_tuple():
    return (Cell(), torch.ones(1, 3), None, None, None)
"""


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def test_check_prints_report_and_comparisons(factory_file, tmp_path, capsys):
    assert main(["check", f"{factory_file}:make", "--out", str(tmp_path / "rep")]) == 0
    text = capsys.readouterr().out
    assert (
        "Theorem 1" in text and "Neumann(5, 0.5) vs Exact(GMRES)" in text and "OneStep vs" in text
    )
    assert "equilibrium found" in text and "the factory's loss" in text
    rep = tmp_path / "rep"
    for name in ("check.json", "check.txt", "comparison.csv", "spectrum.png", "summary.md"):
        assert (rep / name).exists(), name
    assert "![spectrum](spectrum.png)" in (rep / "summary.md").read_text()
    rows = (rep / "comparison.csv").read_text().splitlines()
    assert rows[0] == "estimator,reference,part,metric,value"
    assert any(r.startswith("OneStep,Exact(GMRES),all,cosine,") for r in rows)
    assert main(["check", f"{factory_file}:make_tuple", "--estimators", "onestep", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "OneStep" in data["estimators"] and "random cotangent, seed 0" in data["cotangent"]


def test_check_seed_sets_the_random_cotangent(factory_file, capsys):
    def cosine(seed):
        args = ["check", f"{factory_file}:make_tuple", "--estimators", "onestep", "--json"]
        assert main([*args, "--seed", str(seed)]) == 0
        data = json.loads(capsys.readouterr().out)
        assert f"seed {seed}" in data["cotangent"]
        return data["estimators"]["OneStep"]["comparison"]["overall"]["cosine"]

    assert cosine(3) == cosine(3)
    assert cosine(3) != cosine(4)


def test_check_fail_on_violation(factory_file, capsys):
    target = f"{factory_file}:make_violation"
    assert main(["check", target, "--estimators", "neumann:2:1.0"]) == 0  # reported, not failed
    text = capsys.readouterr().out
    assert "violation: Neumann(2, 1) is not an ascent direction" in text
    assert "warning: gradscope.check: Neumann(2, 1): the terms of the damped series grew" in text
    assert main(["check", target, "--estimators", "neumann:2:1.0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (
        data["violations"]
        and data["estimators"]["Neumann(2, 1)"]["comparison"]["overall"]["inner"] < 0
    )
    assert (
        main(["check", target, "--estimators", "neumann:2:1.0", "--fail-on-violation", "--quiet"])
        == 1
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "{f}:make", "--estimators", "bogus:1"], "unknown estimator 'bogus:1'"),
        (["check", "{f}:make", "--estimators", "neumann:5:1.5"], "damping=1.5"),
        (["check", "{f}:make", "--estimators", "neumann:5"], "expected neumann:K:λ"),
        (["check", "{f}:make", "--estimators", "unrolled:0:0.5"], "steps=0"),
        (["check", "/nonexistent/model.py:make"], "no such file"),
        (["check", "{f}"], "expected path/to/file.py:factory"),
        (["check", "{f}:missing"], "has no 'missing'"),
        (["check", "{f}:make_bad"], "the factory returned int"),
        (["check", "{f}:make_function_without_params"], "a function cell needs 'params'"),
        (["check", "{f}:make_not_a_cell"], "'cell' is a int, not an nn.Module or a function"),
        (["check", "{f}:make_scalar_inputs"], "'inputs' is a int"),
        (["check", "{f}:make_bad_loss"], "'loss' is a int, not a callable"),
        (["check", "{f}:make_long_tuple"], "the factory returned a tuple of 5 items"),
        (["sweep", "--width", "0"], "both must be ≥ 1"),
        (["sweep", "--batch", "0"], "both must be ≥ 1"),
        (["sweep", "--model", "digits", "--rho", "0.5"], "does not apply to --model digits"),
        (["demo", "--device", "gpu"], "--device 'gpu': expected cpu or cuda"),
        (["sweep", "--rho", "1.5"], "expected a spectral radius in (0, 1)"),
        (["sweep", "--dampings", "0.5,2"], "every damping must lie in (0, 1]"),
        (["sweep", "--steps", "0-3"], "expected integers ≥ 1"),
        (["demo", "--estimator", "newton"], "unknown estimator 'newton'"),
        (["demo", "--steps", "0"], "must be positive"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(factory_file, capsys, argv, message):
    argv = [a.replace("{f}", str(factory_file)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith(f"gradscope {argv[0]}: error:")


def test_check_accepts_a_function_cell_with_params(factory_file, capsys):
    assert (
        main(["check", f"{factory_file}:make_function", "--estimators", "onestep", "--json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    comparison = data["estimators"]["OneStep"]["comparison"]
    assert set(comparison["per_param"]) == {"W", "U"}
    assert data["cotangent"] == "the factory's loss" and data["violations"] == []


def test_sweep_on_the_demo_model(capsys):
    argv = ["sweep", "--model", "digits", "--width", "8", "--batch", "6"]
    assert main([*argv, "--steps", "1,3", "--dampings", "0.5,1"]) == 0
    text = capsys.readouterr().out
    assert "the demo's digits DEQ (untrained, seed 0), width 8, batch 6" in text
    assert "ascent:" in text
    assert main([*argv, "--steps", "2", "--dampings", "0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "digits" and 0 < data["rho"] < 1
    assert {r["method"] for r in data["rows"]} == {"Unrolled", "Neumann"}
    assert all(r["ascent"] in (True, False) for r in data["rows"])


@pytest.mark.slow
def test_demo_quiet_prints_nothing_and_json_is_the_summary(tmp_path, capsys):
    argv = ["demo", "--quick", "--steps", "6", "--every", "3", "--out", str(tmp_path)]
    assert main([*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "training" not in captured.err
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 6 and "test_accuracy" in summary


def test_progress_without_tqdm_prints_a_line_every_ten_percent(capsys):
    from gradscope.demo.progress import progress

    bar = progress(20, quiet=False, use_tqdm=False)
    for step in range(20):
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("training: 20/20 steps")
    assert "loss=0.050" in lines[-1]
    assert progress(20, quiet=True) is None


def test_argparse_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--rho", "abc"])
    assert info.value.code == 2


def test_parse_estimators():
    est = parse_estimators("neumann:5:0.5, upg:3:1, onestep, exact")
    assert [e.name for e in est] == ["Neumann(5, 0.5)", "Unrolled(3, 1)", "OneStep", "Exact(GMRES)"]
