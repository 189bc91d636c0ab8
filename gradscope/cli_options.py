"""What the command line and the demo share: :class:`UsageError`, option parsing, output.

The ``gradscope`` commands (``gradscope.cli``) and the demo (:mod:`gradscope.demo`)
both parse estimators and report usage errors; this module is theirs, so that the demo
does not import the command line (the command line depends on the demo, never the
reverse).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .estimators import Estimator, Exact, Neumann, OneStep, Unrolled

__all__ = [
    "ESTIMATOR_SPEC",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VIOLATION",
    "ModelError",
    "UsageError",
    "check_out_folder",
    "describe",
    "emit",
    "json_default",
    "parse_estimators",
    "parse_float_list",
    "parse_int_list",
]

ESTIMATOR_SPEC = "exact | unrolled:K:λ | neumann:K:λ | onestep"


EXIT_OK = 0
"""The command ran; findings, even bad ones, are reported, not failed on."""
EXIT_VIOLATION = 1
"""``check --fail-on-violation`` found a violation."""
EXIT_USAGE = 2
"""A usage error: a bad argument, a missing file or factory, a factory's result of the
wrong form, an unusable ``--out``; found before any work."""
EXIT_FAILED = 3
"""The model could not be checked, or the command crashed: the user's code raised or
called ``sys.exit``, its numbers are NaN or inf, or an unexpected exception."""


class UsageError(Exception):
    """A bad command-line argument or user file: reported on stderr, exit code 2."""


class ModelError(Exception):
    """The user's model could not be checked: reported on stderr, exit code 3.

    Its factory file or factory raised or called ``sys.exit``, the model failed on the
    state, or the factory's data (inputs, parameters, h*, the loss's gradient, F(h*)) is
    NaN or inf. The user's exception, if any, is the ``__cause__`` (``--debug`` prints it).
    """


def describe(error: BaseException) -> str:
    """``"KeyError: 'x'"``: an exception's type and message, on one line."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def check_out_folder(text: str) -> None:
    """Check, before any work, that ``--out`` is a folder that can be created and written.

    Walks up to the nearest path that exists: it must be a folder (not a file, not a broken
    link), and a file must be creatable in it (a temporary one, removed at once). Nothing
    is created.

    Raises:
        UsageError: it is not, with the reason.

    """
    folder = Path(text)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise UsageError(f"--out {text}: it exists and is not a folder")
    if not existing.is_dir():
        raise UsageError(f"--out {text}: cannot create the folder, {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(
            f"--out {text}: {existing} is not writable ({error.strerror or describe(error)})"
        ) from None


def parse_estimators(spec: str) -> list[Estimator]:
    """Parse ``"neumann:5:0.5,unrolled:5:0.5,onestep,exact"`` into estimator objects.

    Returns:
        The estimators, in the order given.

    Raises:
        UsageError: an unknown name, a malformed k or λ, or λ outside (0, 1].

    Example:
        >>> from gradscope.cli_options import parse_estimators
        >>> parse_estimators("neumann:5:0.5,onestep")
        [Neumann(steps=5, damping=0.5), OneStep()]

    """
    estimators: list[Estimator] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, *fields = item.lower().split(":")
        try:
            if name == "exact" and not fields:
                estimators.append(Exact())
            elif name == "onestep" and not fields:
                estimators.append(OneStep())
            elif name in ("unrolled", "upg", "neumann", "npg"):
                if len(fields) != 2:
                    raise UsageError(f"estimator {item!r}: expected {name}:K:λ, e.g. {name}:5:0.5")
                k, lam = int(fields[0]), float(fields[1])
                cls = Unrolled if name in ("unrolled", "upg") else Neumann
                estimators.append(cls(k, lam))
            else:
                raise UsageError(f"unknown estimator {item!r}; expected one of: {ESTIMATOR_SPEC}")
        except (ValueError, TypeError) as error:
            raise UsageError(f"estimator {item!r}: {error}") from None
    if not estimators:
        raise UsageError(
            f"no estimator given; expected a comma-separated list of: {ESTIMATOR_SPEC}"
        )
    return estimators


def parse_int_list(text: str) -> list[int]:
    """``"1-9"`` or ``"1,2,5"`` → a list of positive ints."""
    try:
        if "-" in text:
            lo, hi = (int(t) for t in text.split("-", 1))
            values = list(range(lo, hi + 1))
        else:
            values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(
            f"steps {text!r}: expected a range like 1-9 or a list like 1,3,5"
        ) from None
    if not values or min(values) < 1:
        raise UsageError(f"steps {text!r}: expected integers ≥ 1")
    return values


def parse_float_list(text: str) -> list[float]:
    """``"0.1,0.5,1"`` → floats in (0, 1]."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"dampings {text!r}: expected a list like 0.1,0.5,1.0") from None
    bad = [v for v in values if not 0 < v <= 1]
    if not values or bad:
        raise UsageError(
            f"dampings {text!r}: every damping must lie in (0, 1], got {bad or 'none'}"
        )
    return values


def emit(args: argparse.Namespace, data: dict, text: str) -> None:
    """Print ``data`` as JSON (``--json``), ``text`` otherwise, nothing with ``--quiet``."""
    if args.json:
        print(json.dumps(data, indent=2, default=json_default))
    elif not args.quiet:
        print(text)


def json_default(value):
    """JSON for what ``json`` cannot write: non-finite floats and tensors; ``str`` otherwise."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
