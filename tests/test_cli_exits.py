"""The command line never fails silently: exit codes kept apart, errors in one line.

0 ok, 1 a violation (``--fail-on-violation``), 2 a usage error, 3 the model could not be
checked (the user's code raised or exited, its numbers are NaN or inf, or the work crashed).
"""

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import gradscope.cli
import gradscope.cli_check
import gradscope.cli_sweep
from gradscope.cli import main

FACTORY = """
import pathlib
import sys

import torch

CALLED = pathlib.Path(__file__).with_name("factory-was-called")


class Cell(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(3, 3).double()
        with torch.no_grad():
            self.lin.weight.copy_(0.3 * torch.randn(3, 3, generator=g, dtype=torch.float64))

    def forward(self, h, x):
        return torch.tanh(self.lin(h) + x)


class NaNCell(Cell):  # finite inputs and parameters, NaN output
    def forward(self, h, x):
        return torch.sqrt(self.lin(h) - 10.0) + x


class KinkCell(Cell):  # finite output; sqrt at 0 has an infinite slope: Jv is NaN
    def forward(self, h, x):
        return torch.sqrt(torch.relu(self.lin(h) - 10.0)) + x


class ExitingCell(Cell):
    def forward(self, h, x):
        sys.exit(0)


def x():
    return torch.ones(2, 3, dtype=torch.float64)


def make():
    CALLED.write_text("the factory ran")
    return {"cell": Cell(), "inputs": x(), "loss": lambda h: (h**2).sum()}


def make_nan_inputs():
    return {"cell": Cell(), "inputs": torch.full((2, 3), float("nan"), dtype=torch.float64)}


def make_inf_parameter():
    cell = Cell()
    with torch.no_grad():
        cell.lin.weight[0, 0] = float("inf")
    return {"cell": cell, "inputs": x()}


def make_nan_h_star():
    return {"cell": Cell(), "inputs": x(), "h_star": torch.full((2, 3), float("nan"))}


def make_nan_output():
    return {"cell": NaNCell(), "inputs": x(), "h_star": torch.zeros(2, 3, dtype=torch.float64)}


def make_nan_jacobian():
    return {"cell": KinkCell(), "inputs": x(), "h_star": x()}


def make_nan_loss():
    return {"cell": Cell(), "inputs": x(), "loss": lambda h: h.sum() * float("nan")}


def make_exits():
    sys.exit(0)


def make_exiting_cell():
    return {"cell": ExitingCell(), "inputs": x(), "h_star": torch.zeros(2, 3, dtype=torch.float64)}


def make_raises():
    raise RuntimeError("boom")


def make_loss_raises():
    def loss(h):
        raise ValueError("labels missing")
    return {"cell": Cell(), "inputs": x(), "loss": loss}


def make_wrong_shape():
    return {"cell": Cell(), "inputs": torch.ones(1, 5, dtype=torch.float64)}
"""


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def one_line_error(err: str, command: str = "check") -> str:
    """The stderr of a failed command: one line, no traceback."""
    assert err.startswith(f"gradscope {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------- 3: the model cannot be checked
@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("make_nan_inputs", "the factory's inputs[0] contains NaN or inf"),
        ("make_inf_parameter", "the factory's parameter 'lin.weight' contains NaN or inf"),
        ("make_nan_h_star", "the factory's h_star contains NaN or inf"),
        ("make_nan_jacobian", "the model's derivatives at h* contain NaN or inf (Jg"),
        ("make_nan_loss", "the gradient of the factory's loss at h* contains NaN or inf"),
        ("make_raises", "the factory raised RuntimeError: boom"),
        ("make_loss_raises", "the factory's loss raised ValueError: labels missing"),
        ("make_wrong_shape", "finding the equilibrium failed"),
        ("make_exits", "the factory called sys.exit(0)"),
        ("make_exiting_cell", "sys.exit(0) was called"),
    ],
)
def test_an_unusable_model_exits_3_with_one_line(factory_file, capsys, factory, message):
    assert main(["check", f"{factory_file}:{factory}", "--fail-on-violation"]) == 3
    err = one_line_error(capsys.readouterr().err)
    assert message in err


def test_a_factory_file_that_exits_at_import_exits_3(tmp_path, capsys):
    for code in ("0", "1", "'bye'"):
        path = tmp_path / f"exits_{code.strip(chr(39))}.py"
        path.write_text(f"import sys\nsys.exit({code})\n\ndef make():\n    pass\n")
        assert main(["check", f"{path}:make", "--fail-on-violation"]) == 3
        err = one_line_error(capsys.readouterr().err)
        assert f"importing it called sys.exit({code})" in err


def test_a_crash_inside_the_work_exits_3_and_debug_shows_the_traceback(
    factory_file, capsys, monkeypatch
):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(gradscope.cli_check, "check_theory", broken)
    argv = ["check", f"{factory_file}:make", "--estimators", "onestep"]
    assert main(argv) == 3
    err = one_line_error(capsys.readouterr().err)
    assert "ZeroDivisionError: division by zero" in err and "--debug" in err
    assert main([*argv, "--debug"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: division by zero" in err


def test_debug_shows_the_traceback_of_the_users_code(factory_file, capsys):
    assert main(["check", f"{factory_file}:make_raises", "--debug"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise RuntimeError("boom")' in err
    assert err.rstrip().endswith("the factory raised RuntimeError: boom")


@pytest.mark.slow  # a subprocess: LAPACK on a NaN matrix used to abort the interpreter
def test_a_model_whose_output_is_nan_exits_3(factory_file):
    out = subprocess.run(
        [sys.executable, "-m", "gradscope", "check", f"{factory_file}:make_nan_output"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    err = one_line_error(out.stderr)
    assert "the model's output F(h*) contains NaN or inf" in err


@pytest.mark.slow  # a subprocess: what a CI job sees
def test_sys_exit_0_at_import_fails_the_ci_step(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("import sys\nsys.exit(0)\n")
    out = subprocess.run(
        [sys.executable, "-m", "gradscope", "check", f"{path}:make", "--fail-on-violation"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 3 and out.stdout == ""
    assert "importing it called sys.exit(0)" in one_line_error(out.stderr)


# ------------------------------------------------------------- --out: checked before any work
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_check_an_unusable_out_exits_2_before_calling_the_factory(
    factory_file, tmp_path, capsys, where
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "report" if where == "under_a_file" else blocker
    assert main(["check", f"{factory_file}:make", "--out", str(out)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert f"--out {out}" in err and "not a folder" in err
    assert not (tmp_path / "factory-was-called").exists()  # no work was done


def test_check_out_is_usable_then_the_factory_runs(factory_file, tmp_path):
    out = tmp_path / "new" / "report"
    assert main(["check", f"{factory_file}:make", "--out", str(out), "--quiet"]) == 0
    assert (tmp_path / "factory-was-called").exists() and (out / "check.json").exists()


def test_sweep_and_demo_check_out_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(gradscope.cli_sweep, "tanh_problem", no_work)
    monkeypatch.setattr(gradscope.cli, "run_demo", no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in ("sweep", "demo"):
        out = blocker / "report"
        assert main([command, "--out", str(out)]) == 2
        err = one_line_error(capsys.readouterr().err, command)
        assert f"--out {out}" in err and f"{blocker} is not a folder" in err


def test_out_that_cannot_be_written_exits_2(tmp_path, capsys, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def no_work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(gradscope.cli_sweep, "tanh_problem", no_work)
    monkeypatch.setattr(tempfile, "TemporaryFile", denied)  # as in a folder without write access
    assert main(["sweep", "--out", str(tmp_path / "report")]) == 2
    err = one_line_error(capsys.readouterr().err, "sweep")
    assert f"{tmp_path} is not writable (Permission denied)" in err


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_exits_2(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["sweep", "--out", str(locked / "report")]) == 2
    finally:
        locked.chmod(0o700)
    assert "not writable" in one_line_error(capsys.readouterr().err, "sweep")


# ------------------------------------------------------------- the factory file
def test_check_writes_no_bytecode_beside_the_users_file(factory_file, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE
    assert main(["check", f"{factory_file}:make", "--estimators", "onestep", "--quiet"]) == 0
    assert not (factory_file.parent / "__pycache__").exists()
    assert sys.dont_write_bytecode is False  # restored


def test_check_help_says_the_file_is_executed(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "executes" in text and "as Python code" in text and "trust" in text
