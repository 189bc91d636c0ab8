"""``gradscope sweep``: a (k, λ) grid of UPG and NPG against the exact gradient.

On a float64 tanh cell whose ρ(J) at h* is set by bisection, or on the demo's digits
DEQ as initialised (:func:`~gradscope.demo.equilibrium_problem`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import plots
from .cli_options import UsageError, emit, parse_float_list, parse_int_list
from .demo import DigitsDEQ, equilibrium_problem, load_digits_tensors
from .fixed_point import find_fixed_point
from .operators import jacobian_transpose
from .problem import FixedPointProblem
from .spectral import spectral_radius
from .sweeps import sweep

__all__ = ["digits_problem", "run_sweep", "tanh_problem"]


def tanh_problem(
    rho: float, width: int, batch: int, seed: int
) -> tuple[FixedPointProblem, torch.Tensor, float]:
    """A float64 tanh cell ``tanh(W h + U x + b)`` scaled so that ρ(J) at h* equals ``rho``.

    W is rescaled by bisection on the dense per-sample Jacobian at the re-solved
    equilibrium (ρ(J) is the largest over the batch).

    Returns:
        The problem, a seeded cotangent and the measured ρ(J).

    Raises:
        UsageError: the forward solve does not converge at that spectral radius.

    """
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
        problem = FixedPointProblem.from_function(fn, params, fp.value, x, check=False)
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

    The model is a :class:`~gradscope.demo.DigitsDEQ` as initialised with ``seed``; the cotangent
    is the cross-entropy's gradient at h*.

    Returns:
        The problem, the cotangent and ρ(J).

    Raises:
        UsageError: the digits data cannot be loaded (scikit-learn missing), ``batch`` exceeds
            the training split, or the model's forward solve does not converge.

    """
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
    emit(args, out, text)
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
    frame = result.to_dataframe()
    for method in ("Unrolled", "Neumann"):
        for metric in ("cosine", "relative_error"):
            sub = frame[frame["method"] == method].rename(columns={"steps": "k", metric: "value"})
            fig = plots.plot_damping_heatmap(sub, value="value", title=f"{method}: {metric}")
            plots.save(fig, folder / f"sweep_{method.lower()}_{metric}.png")
