r"""The ``gradscope`` command line: ``demo``, ``sweep`` and ``check``.

Exit codes: 0 ok; 1 a finding the user asked to fail on (``--fail-on-violation``);
2 a usage error (bad argument, missing file or factory, factory returning the wrong
things). Errors go to stderr as one line that says what was wrong and how to fix it.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .estimators import Exact, Neumann, OneStep, Unrolled, estimate_gradient
from .exceptions import ConvergenceWarning, FixedPointWarning
from .metrics import compare
from .problem import FixedPointProblem

__all__ = ["UsageError", "main", "parse_estimators"]

EXAMPLES = """\
examples:
  gradscope demo                              # train a DEQ on real digits, monitor its gradients
  gradscope demo --quick --out report/        # seconds; writes report/summary.md and figures
  gradscope demo --optimizer adam             # ρ(J) drifts towards 1: see the gradients degrade
  gradscope sweep --rho 0.9                   # (k, λ) grid of UPG/NPG vs exact on a tanh cell
  gradscope check my_model.py:make --estimators "neumann:5:0.5,unrolled:5:0.5,onestep"
  gradscope check my_model.py:make --json --fail-on-violation   # for CI scripts
"""

ESTIMATOR_SPEC = "exact | unrolled:K:λ | neumann:K:λ | onestep"


class UsageError(Exception):
    """A bad command-line argument or user file: reported on stderr, exit code 2."""


# ---------------------------------------------------------------------------- parsing
def parse_estimators(spec: str) -> list:
    """Parse ``"neumann:5:0.5,unrolled:5:0.5,onestep,exact"`` into estimator objects.

    Raises:
        UsageError: an unknown name, a malformed k or λ, or λ outside (0, 1].

    Example:
        >>> parse_estimators("neumann:5:0.5,onestep")
        [Neumann(steps=5, damping=0.5), OneStep()]

    """
    estimators = []
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


# ---------------------------------------------------------------------------- check
def load_factory(target: str):
    """Import ``path/to/file.py:factory`` and return the callable."""
    if ":" not in target:
        raise UsageError(f"{target!r}: expected path/to/file.py:factory")
    path_text, name = target.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"gradscope_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise UsageError(
            f"{path}: importing it failed with {type(error).__name__}: {error}"
        ) from None
    factory = getattr(module, name, None)
    if factory is None:
        public = sorted(
            n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))
        )
        raise UsageError(f"{path} has no {name!r}; callables there: {public}")
    if not callable(factory):
        raise UsageError(f"{path}:{name} is a {type(factory).__name__}, not a callable factory")
    return factory


FACTORY_HELP = (
    "the factory must return a dict with 'cell' (an nn.Module whose forward(h, *inputs) "
    "returns the next h, or a function fn(params, h, *inputs) together with 'params', a "
    "dict of parameter tensors) and 'inputs' (a tensor or a tuple of tensors), and optionally "
    "'h_star' (the equilibrium; found with gradscope.find_fixed_point if absent), 'h0' "
    "(the initial state), 'loss' (a callable loss(h_star) -> scalar; a random cotangent "
    "seeded by --seed is used if absent) and 'rtol' (the fixed-point residual above which "
    "h_star is flagged); or a tuple (cell, inputs[, h_star[, loss]])"
)


def build_from_factory(
    factory, seed: int = 0
) -> tuple[FixedPointProblem, torch.Tensor, str, object]:
    """Call the user's factory and make the problem and the cotangent (seeded by ``seed``)."""
    try:
        made = factory()
    except Exception as error:
        raise UsageError(f"the factory raised {type(error).__name__}: {error}") from None
    if isinstance(made, tuple):
        keys = ("cell", "inputs", "h_star", "loss")
        if not 2 <= len(made) <= 4:
            raise UsageError(f"the factory returned a tuple of {len(made)} items; {FACTORY_HELP}")
        made = dict(zip(keys, made))
    if not isinstance(made, dict) or "cell" not in made or "inputs" not in made:
        raise UsageError(f"the factory returned {type(made).__name__}; {FACTORY_HELP}")
    cell, inputs, params = made["cell"], made["inputs"], made.get("params")
    if isinstance(cell, nn.Module):
        if params is not None:
            raise UsageError(
                f"'params' goes with a function cell, not an nn.Module; {FACTORY_HELP}"
            )
        step = cell
    elif callable(cell):
        if not isinstance(params, dict) or not params:
            raise UsageError(
                f"a function cell needs 'params', a non-empty dict of tensors; {FACTORY_HELP}"
            )
        step = functools.partial(cell, params)  # (h, *inputs) ↦ cell(params, h, *inputs)
    else:
        raise UsageError(
            f"'cell' is a {type(cell).__name__}, not an nn.Module or a function; {FACTORY_HELP}"
        )
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    elif isinstance(inputs, (tuple, list)):
        inputs = tuple(inputs)
    else:
        raise UsageError(f"'inputs' is a {type(inputs).__name__}; {FACTORY_HELP}")
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise UsageError(f"'inputs' must be tensors; {FACTORY_HELP}")
    loss = made.get("loss")
    if loss is not None and not callable(loss):
        raise UsageError(f"'loss' is a {type(loss).__name__}, not a callable; {FACTORY_HELP}")
    h_star = made.get("h_star")
    found = None
    if h_star is None:
        fp = _find_fixed_point(step, inputs, made.get("h0"))
        h_star, found = fp.value, fp
    try:
        if isinstance(cell, nn.Module):
            problem = FixedPointProblem.from_module(cell, h_star, *inputs, rtol=made.get("rtol"))
        else:
            problem = FixedPointProblem.from_function(
                cell, params, h_star, *inputs, rtol=made.get("rtol")
            )
    except (TypeError, ValueError, RuntimeError) as error:
        raise UsageError(f"the factory's model does not run: {error}") from None
    if loss is None:
        g = torch.randn(
            h_star.shape, generator=torch.Generator().manual_seed(seed), dtype=h_star.dtype
        )
        g = g.to(h_star.device)
        source = f"a random cotangent, seed {seed} (the factory gave no loss)"
    else:
        h = h_star.detach().requires_grad_(True)
        try:
            value = loss(h)
        except Exception as error:
            raise UsageError(f"the factory's loss raised {type(error).__name__}: {error}") from None
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.requires_grad:
            raise UsageError("'loss' must return a scalar tensor that depends on h_star")
        (g,) = torch.autograd.grad(value, h)
        source = "the factory's loss"
    return problem, g, source, found


def _find_fixed_point(cell, inputs, h0):
    from .fixed_point import find_fixed_point

    try:
        return find_fixed_point(
            cell,
            *inputs,
            h0=h0,
            rtol=1e-8 if inputs[0].dtype == torch.float64 else 1e-5,
            max_steps=500,
        )
    except (TypeError, ValueError, RuntimeError) as error:
        raise UsageError(f"finding the equilibrium failed: {error}") from None


def run_check(args: argparse.Namespace) -> int:
    """``gradscope check``: the theory report and the comparisons for the user's model."""
    estimators = parse_estimators(args.estimators)
    # Numerical warnings (a diverging series, a solve that stalls) are findings of the
    # check: listed in its output, not printed as Python warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("always", FixedPointWarning)
        return _check(args, estimators, caught)


def _check(args: argparse.Namespace, estimators: list, caught: list) -> int:
    from .theory import check_theory

    problem, g, source, found = build_from_factory(load_factory(args.target), args.seed)
    exact = estimate_gradient(problem, g, Exact())
    out: dict = {"problem": repr(problem), "cotangent": source, "estimators": {}}
    lines = [repr(problem), f"cotangent: {source}"]
    if found is not None:
        lines.append(f"equilibrium found: {found!r}")
    lines.append(f"exact gradient: {exact.solution!r}")
    violations = [] if exact.solution.converged else ["the exact solve did not converge"]
    comparisons = []
    for est in estimators:
        if isinstance(est, Exact):
            continue
        estimate = estimate_gradient(problem, g, est)
        report = check_theory(problem, est, g)
        comparison = compare(estimate, exact)
        comparisons.append(comparison)
        verdict = report.ascent.verdict
        out["estimators"][est.name] = {
            "comparison": comparison.to_dict(),
            "theory": report.to_dict(),
        }
        lines += ["", str(report), "", comparison.table()]
        if not comparison.ascent:
            violations.append(f"{est.name} is not an ascent direction (⟨∇̂, ∇⟩ ≤ 0)")
        if verdict == "fails":  # a sufficient condition: a finding to read, not a violation
            out["estimators"][est.name]["theorem1"] = "fails (sufficient condition not met)"
    messages = list(
        dict.fromkeys(
            str(w.message)
            for w in caught
            if issubclass(w.category, (ConvergenceWarning, FixedPointWarning))
        )
    )
    out["warnings"] = messages
    lines += [""] + [f"warning: {m}" for m in messages]
    out["violations"] = violations
    lines += [f"violation: {v}" for v in violations]
    if args.out:
        _write_check_folder(Path(args.out), out, lines, problem, estimators, comparisons)
    _emit(args, out, "\n".join(lines))
    return 1 if (violations and args.fail_on_violation) else 0


def _write_check_folder(
    folder: Path,
    out: dict,
    lines: list[str],
    problem: FixedPointProblem,
    estimators: list,
    comparisons: list,
) -> None:
    """check.json, check.txt, comparison.csv (tidy rows), spectrum.png and summary.md."""
    import csv

    from .demo import spectrum_figure
    from .monitor import COMPARISON_METRICS

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "check.json").write_text(json.dumps(out, indent=2, default=str))
    (folder / "check.txt").write_text("\n".join(lines) + "\n")
    with (folder / "comparison.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["estimator", "reference", "part", "metric", "value"])
        for c in comparisons:
            parts = [("all", c.overall), *c.per_param.items()]
            parts += [(f"input[{i}]", a) for i, a in enumerate(c.per_input) if a is not None]
            for part, agreement in parts:
                for metric in COMPARISON_METRICS:
                    writer.writerow(
                        [c.estimate, c.reference, part, metric, getattr(agreement, metric)]
                    )
                writer.writerow([c.estimate, c.reference, part, "ascent", int(agreement.ascent)])
    dampings = sorted({float(e.damping) for e in estimators if hasattr(e, "damping")}) or None
    spectrum_figure(problem, dampings, folder / "spectrum.png", "at h*")
    (folder / "summary.md").write_text(
        "\n".join(
            [
                "# gradscope check report",
                "",
                "```",
                *lines,
                "```",
                "",
                "## spectrum",
                "",
                "The eigenvalues of J = ∂F/∂h at h* (Ritz values) and, for each damping λ of the",
                "checked phantom estimators, the disk where μ must lie for ρ(B_λ) < 1.",
                "",
                "![spectrum](spectrum.png)",
                "",
            ]
        )
    )


# ---------------------------------------------------------------------------- sweep
def tanh_problem(
    rho: float, width: int, batch: int, seed: int
) -> tuple[FixedPointProblem, torch.Tensor]:
    """A float64 tanh cell ``tanh(W h + U x + b)`` scaled so that ρ(J) at h* equals ``rho``.

    W is rescaled by bisection on the dense per-sample Jacobian at the re-solved
    equilibrium (ρ(J) is the largest over the batch). Returns the problem, a seeded
    cotangent and the measured ρ(J).
    """
    from .fixed_point import find_fixed_point
    from .operators import jacobian_transpose

    gen = torch.Generator().manual_seed(seed)
    W0 = torch.randn(width, width, generator=gen, dtype=torch.float64) / width**0.5
    U = torch.randn(width, 8, generator=gen, dtype=torch.float64) / 8**0.5
    b = 0.1 * torch.randn(width, generator=gen, dtype=torch.float64)
    x = torch.randn(batch, 8, generator=gen, dtype=torch.float64)

    def fn(p, h, x):
        return torch.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])

    def solve(scale):
        params = {"W": scale * W0, "U": U, "b": b}
        fp = find_fixed_point(
            lambda h, x: fn(params, h, x),
            x,
            h0=torch.zeros(batch, width, dtype=torch.float64),
            rtol=1e-13,
            max_steps=5000,
            warn=False,
        )
        problem = FixedPointProblem.from_function(fn, params, fp.value, x, rtol=1e9)
        blocks = jacobian_transpose(problem).dense(per_sample=True)
        return problem, fp, float(torch.linalg.eigvals(blocks).abs().max())

    lo, hi = 0.0, 1.0
    while solve(hi)[2] < rho and hi < 64:
        lo, hi = hi, 2 * hi
    for _ in range(40):
        mid = (lo + hi) / 2
        if solve(mid)[2] < rho:
            lo = mid
        else:
            hi = mid
    problem, fp, measured = solve(lo)
    if not fp.converged:
        raise UsageError(
            f"--rho {rho}: the forward solve does not converge at that spectral radius; use --rho < 1"
        )
    g = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    return problem, g, measured


def digits_problem(
    width: int, batch: int, seed: int
) -> tuple[FixedPointProblem, torch.Tensor, float]:
    """The demo's model at its equilibrium on ``batch`` real training digits, in float64.

    The model is a :class:`~gradscope.synthetic.DigitsDEQ` as initialised with ``seed``; the cotangent
    is the cross-entropy's gradient at h*. Returns the problem, the cotangent and ρ(J).
    """
    from .demo import equilibrium_problem
    from .spectral import spectral_radius
    from .synthetic import DigitsDEQ, load_digits_tensors

    try:
        data = load_digits_tensors(seed=seed, dtype=torch.float64)
    except ImportError as error:
        raise UsageError(f"{error} (pip install 'gradscope[data]')") from None
    if batch > len(data.y_train):
        raise UsageError(f"--batch {batch}: the digits training split has {len(data.y_train)}")
    torch.manual_seed(seed)
    model = DigitsDEQ(width=width).double()
    fp, problem, g = equilibrium_problem(
        model, data.x_train[:batch], data.y_train[:batch], rtol=1e-12, max_steps=2000
    )
    if not fp.converged:
        raise UsageError(f"the demo model's forward solve did not converge ({fp!r})")
    return problem, g, spectral_radius(problem).value


def run_sweep(args: argparse.Namespace) -> int:
    """``gradscope sweep``: a (k, λ) grid of UPG and NPG against the exact gradient."""
    from .sweeps import sweep

    steps = parse_int_list(args.steps)
    dampings = parse_float_list(args.dampings)
    if args.width < 1 or args.batch < 1:
        raise UsageError(f"--width {args.width}, --batch {args.batch}: both must be ≥ 1")
    if args.model == "digits":
        if args.rho is not None:
            raise UsageError(
                "--rho sets the synthetic tanh cell; it does not apply to --model digits"
            )
        problem, g, measured = digits_problem(args.width, args.batch, args.seed)
        what = f"the demo's digits DEQ (untrained, seed {args.seed}), width {args.width}"
    else:
        rho = 0.9 if args.rho is None else args.rho
        if not 0 < rho < 1:
            raise UsageError(
                f"--rho {rho}: expected a spectral radius in (0, 1) (the forward solve must converge)"
            )
        problem, g, measured = tanh_problem(rho, args.width, args.batch, args.seed)
        what = f"tanh cell, width {args.width}"
    result = sweep(problem, g, steps=steps, dampings=dampings)
    text = "\n\n".join(
        [f"{what}, batch {args.batch}, ρ(J) = {measured:.4f} (float64)"]
        + [
            result.table(metric, method)
            for method in ("Unrolled", "Neumann")
            for metric in ("cosine", "relative_error")
        ]
        + [_ascent_line(result)]
    )
    out = {"model": args.model, "rho": measured, "rows": result.rows}
    if args.out:
        folder = Path(args.out)
        result.to_csv(folder / "sweep.csv")
        _sweep_figures(result, folder)
    _emit(args, out, text)
    return 0


def _ascent_line(result) -> str:
    """Which (k, λ) cells are not an ascent direction (⟨∇̂, ∇⟩ ≤ 0)."""
    bad = [
        f"{row['method']}({row['steps']}, {row['damping']:g})"
        for row in result.rows
        if not row["ascent"]
    ]
    if not bad:
        return "ascent: every cell is an ascent direction (⟨∇̂, ∇⟩ > 0)"
    return f"ascent: NOT an ascent direction (⟨∇̂, ∇⟩ ≤ 0) in {len(bad)} cells: " + ", ".join(bad)


def _sweep_figures(result, folder: Path) -> None:
    from . import plots

    frame = result.to_dataframe()
    for method in ("Unrolled", "Neumann"):
        for metric in ("cosine", "relative_error"):
            sub = frame[frame["method"] == method].rename(columns={"steps": "k", metric: "value"})
            fig = plots.plot_damping_heatmap(sub, value="value", title=f"{method}: {metric}")
            plots.save(fig, folder / f"sweep_{method.lower()}_{metric}.png")


# ---------------------------------------------------------------------------- shared
def _emit(args: argparse.Namespace, data: dict, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=_json_default))
    elif not args.quiet:
        print(text)


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and the tests)."""
    parser = argparse.ArgumentParser(
        prog="gradscope",
        description="How good are your implicit-model gradients? Exact vs phantom gradients for DEQs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,sweep,check}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", help="write a report folder here")
        p.add_argument(
            "--json", action="store_true", help="print JSON instead of text (for scripts)"
        )
        p.add_argument("--quiet", action="store_true", help="print nothing but errors")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    demo = sub.add_parser(
        "demo",
        help="train a DEQ on scikit-learn digits and monitor its gradients",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(demo)
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

    sw = sub.add_parser(
        "sweep",
        help="a (k, λ) grid of UPG/NPG against the exact gradient",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(sw)
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

    ck = sub.add_parser(
        "check",
        help="theory report and comparisons for your own model",
        epilog=EXAMPLES + "\n" + FACTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(ck)
    ck.add_argument("target", help="path/to/file.py:factory")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        if args.command == "sweep":
            return run_sweep(args)
        return run_check(args)
    except UsageError as error:
        print(f"gradscope {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
