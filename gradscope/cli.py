r"""The ``gradscope`` command line: ``demo``, ``sweep`` and ``check``.

Exit codes (``gradscope.cli_options``): 0 ok; 1 a finding the user asked to fail on
(``--fail-on-violation``); 2 a usage error (bad argument, missing file or factory, factory
returning the wrong things, an ``--out`` that cannot be written: all found before any work);
3 the model could not be checked or the command crashed (the factory file or the factory
raised or called ``sys.exit``, the model failed on the state, NaN or inf in the factory's
data or the model's output, any unexpected exception). Errors go to stderr as one line
that says what was wrong; ``--debug`` adds the traceback above it.

This module is the argument parser and the dispatch; each command lives in its own
module (:mod:`gradscope.demo`, ``gradscope.cli_sweep``, ``gradscope.cli_check``, which
loads the user's factory with ``gradscope.cli_factory``), and what they share in
``gradscope.cli_options``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .cli_check import run_check
from .cli_factory import FACTORY_HELP
from .cli_options import (
    ESTIMATOR_SPEC,
    EXIT_FAILED,
    EXIT_USAGE,
    ModelError,
    UsageError,
    check_out_folder,
    describe,
    parse_estimators,
)
from .cli_sweep import run_sweep
from .demo import run_demo

__all__ = ["UsageError", "build_parser", "main", "parse_estimators"]

EXAMPLES = """\
examples:
  gradscope demo                              # train a DEQ on real digits, monitor its gradients
  gradscope demo --quick --out report/        # seconds; writes report/summary.md and figures
  gradscope demo --optimizer adam             # ρ(J) drifts towards 1: see the gradients degrade
  gradscope sweep --rho 0.9                   # (k, λ) grid of UPG/NPG vs exact on a tanh cell
  gradscope check my_model.py:make --estimators "neumann:5:0.5,unrolled:5:0.5,onestep"
  gradscope check my_model.py:make --json --fail-on-violation   # for CI scripts
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and the tests)."""
    parser = argparse.ArgumentParser(
        prog="gradscope",
        description="How good are your implicit-model gradients? Exact vs phantom gradients for DEQs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,sweep,check}")
    _add_demo(sub)
    _add_sweep(sub)
    _add_check(sub)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    """The options every command takes."""
    p.add_argument("--out", help="write a report folder here")
    p.add_argument("--json", action="store_true", help="print JSON instead of text (for scripts)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print the Python traceback (of your code, for a failing model)",
    )


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="train a DEQ on scikit-learn digits and monitor its gradients",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(demo)
    demo.add_argument(
        "--quick", action="store_true", help="a few seconds: fewer steps, smaller model"
    )
    demo.add_argument(
        "--estimator",
        default="neumann:5:0.5",
        help="the training backward (default neumann:5:0.5; or unrolled:5:0.5, exact, onestep)",
    )
    demo.add_argument(
        "--steps", type=int, default=None, help="training steps (default 300; 40 with --quick)"
    )
    demo.add_argument(
        "--every",
        type=int,
        default=None,
        help="monitor every N steps (default 20; 10 with --quick)",
    )
    demo.add_argument("--width", type=int, default=48, help="state width of the DEQ (default 48)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default="sgd",
        help="sgd (momentum 0.9, default: ρ(J) stays moderate) or adam (AdamW: ρ(J) climbs "
        "towards 1 on this model, and the phantom gradients degrade — watch the monitor)",
    )


def _add_sweep(sub) -> None:
    sw = sub.add_parser(
        "sweep",
        help="a (k, λ) grid of UPG/NPG against the exact gradient",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(sw)
    sw.add_argument(
        "--model",
        choices=("tanh", "digits"),
        default="tanh",
        help="tanh: a synthetic cell with a chosen ρ(J) (default); digits: the demo's DEQ "
        "(as initialised) on real digits",
    )
    sw.add_argument(
        "--rho",
        type=float,
        default=None,
        help="ρ(J) of the synthetic tanh cell, in (0, 1) (default 0.9)",
    )
    sw.add_argument("--width", type=int, default=32, help="state width (default 32)")
    sw.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    sw.add_argument(
        "--steps", default="1-9", help="k values: a range 1-9 or a list 1,3,5 (default 1-9)"
    )
    sw.add_argument(
        "--dampings",
        default="0.1,0.3,0.5,0.7,0.9,1.0",
        help="λ values in (0, 1] (default 0.1,0.3,0.5,0.7,0.9,1.0)",
    )


CHECK_DESCRIPTION = """\
The theory report and the comparisons with the exact gradient for your own model.

This executes path/to/file.py as Python code, with your permissions: check imports
the file (running its top level, like `python file.py` would) and calls the factory.
Only check files you trust. A file or factory that raises or calls sys.exit is an
error (exit 3), never a silent pass.

exit codes: 0 ok; 1 a violation (with --fail-on-violation); 2 a usage error (found before
any work); 3 the model could not be checked (your code raised or exited, NaN or inf in
its tensors or output) or the command crashed; --debug prints the traceback.
"""


def _add_check(sub) -> None:
    ck = sub.add_parser(
        "check",
        help="theory report and comparisons for your own model (executes its file)",
        description=CHECK_DESCRIPTION,
        epilog=EXAMPLES + "\n" + FACTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(ck)
    ck.add_argument("target", help="path/to/file.py:factory (the file is executed as Python code)")
    ck.add_argument(
        "--estimators",
        default="neumann:5:0.5,unrolled:5:0.5,onestep",
        help=f"comma-separated: {ESTIMATOR_SPEC} (default neumann:5:0.5,unrolled:5:0.5,onestep)",
    )
    ck.add_argument(
        "--fail-on-violation",
        action="store_true",
        help="exit 1 if the exact solve fails or an estimator is not an ascent direction (⟨∇̂, ∇⟩ ≤ 0); Theorem 1's condition is sufficient only, so its failing is reported but not a violation",
    )


DEMO_OUT = "gradscope-report"
"""Where ``gradscope demo`` writes without ``--out`` (``gradscope.demo.runner.settings``)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module's docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = args.out or (DEMO_OUT if args.command == "demo" else None)
        if out:
            check_out_folder(out)  # before any work: not after minutes of it
        if args.command == "demo":
            return run_demo(args)
        if args.command == "sweep":
            return run_sweep(args)
        return run_check(args)
    except UsageError as error:
        return _error(args, error, str(error), EXIT_USAGE)
    except ModelError as error:
        return _error(args, error, str(error), EXIT_FAILED, hint=error.__cause__ is not None)
    except SystemExit as error:  # argparse exits above, before the try: this is user code
        by = " (by the model's code)" if args.command == "check" else ""
        message = f"sys.exit({error.code!r}) was called while running gradscope {args.command}{by}"
        return _error(args, error, message, EXIT_FAILED, hint=True)
    except Exception as error:  # a crash: exit 3 and one line, never a traceback
        return _error(args, error, f"unexpected {describe(error)}", EXIT_FAILED, hint=True)


def _error(
    args: argparse.Namespace, error: BaseException, message: str, code: int, hint: bool = False
) -> int:
    """Print the error as one line on stderr (the traceback above it with ``--debug``)."""
    if args.debug:
        traceback.print_exception(error)
    elif hint:
        message += " (rerun with --debug for the traceback)"
    print(f"gradscope {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
