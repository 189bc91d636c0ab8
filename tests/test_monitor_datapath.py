"""The monitor's data path loses nothing silently ("Nothing silent", item 6).

Fault injection for each way a row used to go missing or be misread: an ``extra`` or an
estimator that raises, a sink whose file fails on write or close, a sink folder deleted
mid-run, torn CSV/JSONL tails, names with quotes/commas/newlines, a memory bound on the
kept records, and a reference solve that fails (or used to, in float32).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
import warnings

import pytest
import torch
from torch import nn

import gradscope as gs

F64 = torch.float64
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _case(d=4, dtype=F64, seed=0):
    """A small tanh cell at its fixed point, inputs and a cotangent."""
    generator = torch.Generator().manual_seed(seed)
    cell = gs.synthetic.TanhCell(d, 0.5, generator=generator).to(dtype)
    x = torch.randn(3, d, generator=generator, dtype=dtype)
    fp = gs.find_fixed_point(cell, x, h0=torch.zeros(3, d, dtype=dtype), rtol=1e-10)
    g = torch.randn(3, d, generator=generator, dtype=dtype)
    return cell, fp.value, x, g


def _observe(monitor, n=1, name="deq", case=None):
    cell, h, x, g = case or _case()
    for step in range(n):
        monitor.observe(cell, h, x, cotangent=g, step=step, name=name)


def _frame(rows):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(rows, columns=list(gs.monitor.COLUMNS))


# --------------------------------------------------------------------- isolation
def test_a_failing_extra_loses_only_its_own_rows(caplog):
    def broken_extra(problem, exact, estimates):
        raise RuntimeError("boom")

    def half_broken(problem, exact, estimates):
        return {"fine": 1.0, "bad": "not a number"}  # float() fails on the second value

    def good_extra(problem, exact, estimates):
        return {"answer": 42.0}

    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()],
        schedule=gs.monitor.Every(1),
        extra=[broken_extra, half_broken, good_extra],
    )
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        _observe(monitor)
    df = _frame(monitor.records)
    # the exact and the estimator rows survive
    assert set(df[df.role == "exact"].metric) >= {"converged", "residual", "grad_norm"}
    assert {"cosine", "relative_error"} <= set(df[df.estimator == "OneStep"].metric)
    # the good extra's rows too; each failing extra leaves one error row and nothing else
    extra = df[df.role == "extra"]
    assert extra[extra.metric == "answer"].value.tolist() == [42.0]
    assert "fine" not in set(extra.metric) and "bad" not in set(extra.metric)
    errors = extra[extra.metric == "error"]
    assert sorted(errors.estimator) == ["broken_extra", "half_broken"]
    assert (errors.value == 1.0).all()
    assert monitor.observations == 1 and monitor.errors == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken_extra" in m and "RuntimeError" in m and "boom" in m for m in messages)
    assert any("half_broken" in m and "ValueError" in m for m in messages)


def test_a_single_failing_extra_keeps_the_observation():
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), extra=lambda *_: 1 / 0
    )
    _observe(monitor)
    df = _frame(monitor.records)
    assert "cosine" in set(df.metric) and "seconds" in set(df[df.role == "monitor"].metric)
    error = df[df.metric == "error"]
    assert error.role.tolist() == ["extra"] and monitor.errors == 1 and monitor.observations == 1
    assert "ZeroDivisionError" in monitor.last_error


class Broken(gs.Estimator):
    """An estimator whose adjoint raises."""

    def adjoint(self, JT, g):
        raise RuntimeError("kaboom")


def test_an_estimator_that_raises_loses_only_its_own_rows(caplog):
    monitor = gs.GradientMonitor(estimators=[Broken(), gs.OneStep()], schedule=gs.monitor.Every(1))
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        _observe(monitor)
    df = _frame(monitor.records)
    assert df[df.estimator == "Broken"].metric.tolist() == ["error"]
    assert "cosine" in set(df[df.estimator == "OneStep"].metric)
    assert monitor.errors == 1 and monitor.observations == 1
    assert any("Broken" in r.getMessage() and "kaboom" in r.getMessage() for r in caplog.records)
    strict = gs.GradientMonitor(
        estimators=[Broken()], schedule=gs.monitor.Every(1), raise_errors=True
    )
    with pytest.raises(RuntimeError, match="kaboom"):
        _observe(strict)


# --------------------------------------------------------------------- the reference
class Linear(nn.Module):
    """F(h, x) = W h + x."""

    def __init__(self, W):
        super().__init__()
        self.W = nn.Parameter(W)

    def forward(self, h, x):
        return h @ self.W.T + x


def _float32_case(d=16, radius=0.98, n=8):
    """A float32 linear cell with eigenvalues in [−0.98, 0.98]: rtol 1e-6 is below its floor."""
    generator = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=F64))
    W = Q @ torch.diag(torch.linspace(-radius, radius, d, dtype=F64)) @ Q.T
    x = torch.randn(n, d, generator=generator, dtype=F64)
    h = torch.linalg.solve(torch.eye(d, dtype=F64) - W, x.T).T
    g = torch.randn(n, d, generator=generator)
    return Linear(W.float()), h.float(), x.float(), g


def test_the_default_reference_follows_the_dtype():
    assert gs.GradientMonitor().exact.solver.rtol is None  # solve: default_solver_rtol(dtype)
    monitor = gs.GradientMonitor(estimators=[gs.OneStep()], schedule=gs.monitor.Every(1))
    _observe(monitor, n=3, case=_float32_case())
    df = _frame(monitor.records)
    exact = df[df.role == "exact"]
    assert exact[exact.metric == "converged"].value.tolist() == [1.0, 1.0, 1.0]
    assert exact[exact.metric == "residual"].value.max() <= gs.solvers.default_solver_rtol(
        torch.float32
    )
    assert len(df[(df.metric == "cosine") & (df.param == "all")]) == 3
    assert "reference_failed" not in set(df.metric) and monitor.warnings == 0


def test_a_failed_reference_leaves_a_row_saying_so():
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()],
        exact=gs.Exact(gs.solvers.GMRES(max_steps=1)),
        schedule=gs.monitor.Every(1),
    )
    _observe(monitor, n=2, case=_float32_case())
    df = _frame(monitor.records)
    failed = df[df.metric == "reference_failed"]
    assert failed.value.tolist() == [1.0, 1.0] and set(failed.role) == {"exact"}
    assert set(failed.estimator) == {"Exact(GMRES)"}
    assert set(df[df.metric.str.startswith("status_")].metric) == {"status_max_steps"}
    assert "cosine" not in set(df.metric) and monitor.errors == 0 and monitor.warnings == 2


def test_a_reference_that_raises_leaves_a_row_saying_so():
    class Raising(gs.solvers.GMRES):
        def iterate(self, A, b, x, layout):
            raise RuntimeError("solver crashed")

    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], exact=gs.Exact(Raising()), schedule=gs.monitor.Every(1)
    )
    _observe(monitor)
    df = _frame(monitor.records)
    exact = df[df.role == "exact"].set_index("metric").value
    assert exact["error"] == 1.0 and exact["reference_failed"] == 1.0
    assert "vjps" in set(df[df.estimator == "OneStep"].metric)  # the estimator still ran
    assert monitor.errors == 1 and monitor.observations == 1


# --------------------------------------------------------------------- summaries and plots
def _mixed_frame():
    """Three observations, the one at step 1 without a reference."""
    good = gs.GradientMonitor(estimators=[gs.OneStep()], schedule=gs.monitor.Every(1))
    bad = gs.GradientMonitor(
        estimators=[gs.OneStep()],
        exact=gs.Exact(gs.solvers.GMRES(max_steps=1)),
        schedule=gs.monitor.Every(1),
    )
    case = _float32_case()
    cell, h, x, g = case
    for step, monitor in enumerate((good, bad, good)):
        monitor.observe(cell, h, x, cotangent=g, step=step, name="deq")
    return good, bad


def test_summaries_and_plots_say_how_many_observations_lack_a_reference():
    pytest.importorskip("matplotlib")
    pytest.importorskip("seaborn")
    import matplotlib.pyplot as plt

    from gradscope.demo import report

    good, bad = _mixed_frame()
    frame = _frame(good.records + bad.records)
    for make in (
        gs.plots.plot_metric,
        gs.plots.plot_cosine_distribution,
        gs.plots.plot_cost_accuracy,
    ):
        fig = make(frame)
        titles = " ".join(ax.get_title() for ax in fig.axes)
        plt.close(fig)
        assert "1 of 3 observations without a reference" in titles, make.__name__
    monitor = types.SimpleNamespace(
        records=good.records + bad.records,
        estimators=[gs.OneStep()],
        observations=3,
        errors=0,
        warnings=1,
        rows_lost=0,
        records_dropped=0,
    )
    data = types.SimpleNamespace(x_train=torch.zeros(10, 64), x_test=torch.zeros(5, 64))
    summary = report.summarise(monitor, gs.Neumann(5, 0.5), 0.9, 1.0, 3, 1, 16, [1.0], data, "SGD")
    assert summary["observations_without_reference"] == 1
    text = report.table({**summary, "backward": []})
    assert "1 of 3 observations without a reference" in text
    assert not math.isnan(summary["estimators"][1]["cosine_median"])


# --------------------------------------------------------------------- sinks that fail
class FaultyFile:
    """A file whose chosen methods raise OSError(ENOSPC), as on a full disk."""

    def __init__(self, file, fail_on):
        self._file, self._fail_on = file, fail_on

    def __getattr__(self, name):
        attr = getattr(self._file, name)
        if name not in self._fail_on:
            return attr

        def fail(*args, **kwargs):
            if name == "close":
                self._file.close()
            raise OSError(errno.ENOSPC, "No space left on device")

        return fail

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _faulty_open(monkeypatch, fail_on):
    real_open = pathlib.Path.open
    opened = []

    def faulty_open(self, mode="r", *args, **kwargs):
        file = real_open(self, mode, *args, **kwargs)
        if not set(mode) & set("aw+"):
            return file  # reading works on a full disk
        file = FaultyFile(file, fail_on)
        opened.append(file)
        return file

    monkeypatch.setattr(pathlib.Path, "open", faulty_open)
    return opened


@pytest.mark.parametrize("sink_type", [gs.monitor.CSVSink, gs.monitor.JSONLSink])
def test_a_full_disk_on_write_is_counted_not_raised(tmp_path, monkeypatch, caplog, sink_type):
    sink = sink_type(tmp_path / "r.out")
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[sink]
    )
    _faulty_open(monkeypatch, {"write", "flush"})
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        with monitor:  # the with block ends without raising
            _observe(monitor, n=2)
    assert monitor.observations == 2
    written = len(monitor.records)
    assert monitor.rows_lost == written and monitor.errors >= 1
    assert any("No space left" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("sink_type", [gs.monitor.CSVSink, gs.monitor.JSONLSink])
def test_a_full_disk_on_close_is_counted_not_raised(tmp_path, monkeypatch, caplog, sink_type):
    sink = sink_type(tmp_path / "r.out")
    other = gs.monitor.JSONLSink(tmp_path / "other.jsonl")
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[sink, other]
    )
    opened = _faulty_open(monkeypatch, {"close"})
    _observe(monitor)
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        monitor.close()  # does not raise
    assert monitor.errors >= 1
    assert any("No space left" in r.getMessage() for r in caplog.records)
    assert all(f._file.closed for f in opened)  # every sink was closed, the failing one too


def test_a_sink_that_raises_loses_rows_counted(caplog):
    class Refusing:
        def write(self, rows):
            raise OSError(errno.EIO, "I/O error")

        def close(self):
            raise OSError(errno.EIO, "I/O error at close")

    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[Refusing()]
    )
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        with monitor:
            _observe(monitor, n=2)
    assert monitor.rows_lost == len(monitor.records) > 0
    assert monitor.errors == 3  # two writes and the close
    assert "rows_lost" in repr(monitor)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_sink_folder_deleted_mid_run(tmp_path, caplog, suffix):
    pytest.importorskip("pandas")
    folder = tmp_path / "run"
    sink = (gs.monitor.CSVSink if suffix == ".csv" else gs.monitor.JSONLSink)(folder / f"r{suffix}")
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[sink]
    )
    case = _case()
    _observe(monitor, n=2, case=case)
    before = len(monitor.records)
    shutil.rmtree(folder)
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        cell, h, x, g = case
        monitor.observe(cell, h, x, cotangent=g, step=2)
        monitor.close()
    assert monitor.rows_lost == before and monitor.errors >= 1
    assert any("deleted" in r.getMessage() for r in caplog.records)
    back = gs.monitor.read_records(folder / f"r{suffix}")  # the rows after the deletion
    assert len(back) == len(monitor.records) - before and set(back.step) == {2}


def test_a_sink_file_deleted_before_close(tmp_path, caplog):
    sink = gs.monitor.CSVSink(tmp_path / "r.csv")
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[sink]
    )
    _observe(monitor)
    (tmp_path / "r.csv").unlink()
    with caplog.at_level(logging.ERROR, logger="gradscope.monitor"):
        monitor.close()
    assert monitor.rows_lost == len(monitor.records) and monitor.errors == 1


# --------------------------------------------------------------------- reading back
ROW = dict(zip(gs.monitor.COLUMNS, (0, "deq", "exact", "Exact(GMRES)", "all", "residual", 0.0703)))


def _sunk(path, rows):
    sink = (gs.monitor.JSONLSink if path.suffix == ".jsonl" else gs.monitor.CSVSink)(path)
    sink.write(rows)
    sink.close()


def _rows(n, **fields):
    return [{**ROW, "step": i, "value": 0.0703 * (i + 1), **fields} for i in range(n)]


@pytest.mark.parametrize(
    "tail",
    [
        "3,deq,exact,Exact(GMRES),all,residual,0.0",  # 0.0703 torn after "0.0"
        "3,deq,exact,Exact(GM",  # fewer fields
        '3,deq,exact,"Exact(GM',  # an open quote
        "3,deq,exact,Exact(GMRES),all,residual,0.0703\r",  # torn inside the line ending
    ],
)
def test_read_records_skips_a_torn_final_csv_row(tmp_path, tail):
    pytest.importorskip("pandas")
    path = tmp_path / "r.csv"
    _sunk(path, _rows(3))
    with path.open("a", newline="") as file:
        file.write(tail)
    with pytest.warns(UserWarning, match="read_records"):
        frame = gs.monitor.read_records(path)
    assert frame.step.tolist() == [0, 1, 2]
    assert frame.value.tolist() == pytest.approx([0.0703, 0.1406, 0.2109], rel=1e-15)


def test_read_records_skips_a_torn_final_jsonl_line(tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "r.jsonl"
    _sunk(path, _rows(3))
    with path.open("a") as file:
        file.write(
            '{"step": 3, "layer": "deq", "role": "exact", "estimator": "Exact(GMRES)", "param": "all", "metric": "residual", "value": 0.0'
        )
    with pytest.warns(UserWarning, match="read_records"):
        frame = gs.monitor.read_records(path)
    assert frame.step.tolist() == [0, 1, 2]
    assert frame.value.tolist() == pytest.approx([0.0703, 0.1406, 0.2109], rel=1e-15)


def test_read_records_complete_files_do_not_warn(tmp_path):
    pytest.importorskip("pandas")
    for name in ("r.csv", "r.jsonl"):
        _sunk(tmp_path / name, _rows(2))
        assert len(gs.monitor.read_records(tmp_path / name)) == 2  # no warning (an error here)


def test_read_records_refuses_a_torn_row_in_the_middle(tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "r.csv"
    _sunk(path, _rows(2))
    with path.open("a", newline="") as file:
        file.write("3,deq,exa\r\n4,deq,exact,Exact(GMRES),all,residual,1.0\r\n")
    with pytest.raises(ValueError, match="record 4"):
        gs.monitor.read_records(path)


NAMES = ['he said "hi", then\nleft', 'W,"b"\r\nc', '"', ",", "\n", " padded ", "nan", "1e3"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_any_name_round_trips_even_after_a_torn_tail(tmp_path, suffix):
    pytest.importorskip("pandas")
    path = tmp_path / f"r{suffix}"
    rows = [
        {**ROW, "step": i, "layer": name, "param": name, "estimator": name}
        for i, name in enumerate(NAMES)
    ]
    _sunk(path, rows)
    frame = gs.monitor.read_records(path)
    assert frame.layer.tolist() == NAMES and frame.param.tolist() == NAMES
    assert frame.estimator.tolist() == NAMES
    # a torn tail right inside a quoted name
    text = path.read_bytes()
    _sunk(path, [{**ROW, "step": 99, "layer": NAMES[0]}])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(text) + 12])
    with pytest.warns(UserWarning, match="read_records"):
        frame = gs.monitor.read_records(path)
    assert frame.layer.tolist() == NAMES and frame.step.tolist() == list(range(len(NAMES)))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_cut_anywhere_reads_back_a_prefix_of_its_rows(tmp_path, suffix):
    # wherever a writer stops (a multi-byte character included), what is read back is
    # the complete rows before the cut, exactly; never a truncated value or name
    pytest.importorskip("pandas")
    names = [*NAMES, "é\u2028x"]
    path = tmp_path / f"r{suffix}"
    rows = [
        {**ROW, "step": i, "layer": name, "param": name, "value": 0.0703 * (i + 1)}
        for i, name in enumerate(names)
    ]
    _sunk(path, rows)
    data = path.read_bytes()
    for cut in range(1, len(data) + 1):
        path.write_bytes(data[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            frame = gs.monitor.read_records(path)
        n = len(frame)
        assert frame.step.tolist() == list(range(n)), cut
        assert frame.layer.tolist() == names[:n] and frame.param.tolist() == names[:n], cut
        assert frame.value.tolist() == [0.0703 * (i + 1) for i in range(n)], cut
    assert n == len(names)


def test_a_quoted_layer_name_stays_readable_after_a_torn_tail(tmp_path):
    pytest.importorskip("pandas")
    name = 'block "3", a\nb'
    sink = gs.monitor.CSVSink(tmp_path / "r.csv")
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), sinks=[sink]
    )
    _observe(monitor, n=2, name=name)
    monitor.close()
    with (tmp_path / "r.csv").open("a", newline="") as file:
        file.write('2,"block ""3')  # the run was killed in the next row's name
    with pytest.warns(UserWarning, match="read_records"):
        back = gs.monitor.read_records(tmp_path / "r.csv")
    assert set(back.layer) == {name} and len(back) == len(monitor.records)


def test_appending_after_a_torn_tail_repairs_the_file(tmp_path, caplog):
    pytest.importorskip("pandas")
    for suffix in (".csv", ".jsonl"):
        path = tmp_path / f"r{suffix}"
        _sunk(path, _rows(2))
        with path.open("a", newline="") as file:
            file.write('7,"de')  # a run killed mid-row
        with caplog.at_level(logging.WARNING, logger="gradscope.monitor"):
            _sunk(path, _rows(1))  # the next run appends
        frame = gs.monitor.read_records(path)  # no warning: the torn row was cut off
        assert frame.step.tolist() == [0, 1, 0]
        assert any("torn" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_killed_writer_leaves_every_completed_row_readable(tmp_path):
    # A smoke test on a real kill -9: the kill usually lands between the writes, so the
    # torn-tail cases are the hand-written ones above; here every completed row is checked.
    pytest.importorskip("pandas")
    path = tmp_path / "r.csv"
    script = textwrap.dedent(
        f"""
        import sys
        from gradscope.monitor import CSVSink
        sink = CSVSink({str(path)!r})
        row = dict(step=0, layer='a "b",\\nc', role="exact", estimator="E", param="all", metric="m", value=0.0)
        step = 0
        while True:
            sink.write([dict(row, step=step + i, value=0.0703 * (step + i)) for i in range(200)])
            step += 200
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not path.exists() or path.stat().st_size < 2_000_000
        ):
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with open(path, "rb") as file:
        torn = not file.read().endswith(b"\n")
    if torn:
        with pytest.warns(UserWarning, match="read_records"):
            frame = gs.monitor.read_records(path)
    else:
        frame = gs.monitor.read_records(path)
    assert len(frame) > 1000
    assert frame.step.tolist() == list(range(len(frame)))
    assert frame.value.tolist() == [0.0703 * s for s in range(len(frame))]
    assert set(frame.layer) == {'a "b",\nc'}


# --------------------------------------------------------------------- bounded memory
def test_keep_records_int_bounds_the_rows_in_memory():
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()], schedule=gs.monitor.Every(1), keep_records=25
    )
    case = _case()
    _observe(monitor, n=1, case=case)
    per_observation = len(monitor.records)
    assert per_observation < 25 < 4 * per_observation
    _observe(monitor, n=4, case=case)
    assert len(monitor.records) == 25
    assert monitor.records_dropped == 5 * per_observation - 25
    assert monitor.records[-1]["step"] == 3  # the newest kept, the oldest dropped
    assert "records_dropped" in repr(monitor)
    everything = gs.GradientMonitor(estimators=[gs.OneStep()], schedule=gs.monitor.Every(1))
    _observe(everything, n=3, case=case)
    assert len(everything.records) == 3 * per_observation and everything.records_dropped == 0
    with pytest.raises(ValueError, match="keep_records"):
        gs.GradientMonitor(keep_records=-1)
    with pytest.raises(TypeError, match="keep_records"):
        gs.GradientMonitor(keep_records=2.5)
