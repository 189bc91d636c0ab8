"""Optional dependencies: a missing one is a clear ImportError naming the call and the extra."""

import builtins

import pytest

import gradscope as gs
from gradscope._checks import require


def test_require_names_the_call_the_package_and_the_extra():
    with pytest.raises(ImportError, match=r"gradscope\.monitor\.X: no_such_pkg is not installed; .*gradscope\[logging\]"):
        require("no_such_pkg.sub", "monitor.X", "this", "logging")
    assert require("math", "x", "y", "z").sqrt(4.0) == 2.0


def test_a_missing_pandas_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    monkeypatch.delitem(__import__("sys").modules, "pandas", raising=False)
    with pytest.raises(ImportError, match=r"pandas is not installed.*gradscope\[logging\]"):
        gs.monitor.read_records([])
