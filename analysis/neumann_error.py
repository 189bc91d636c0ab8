"""The Neumann adjoint error is bounded by ‖B_λ^k‖₂, not by ρ(B_λ)^k.

Claim [derived, docs/explanation/phantom_gradients.rst (theory-neumann-error)]: the
k-step Neumann (NPG) adjoint satisfies ``u* − u_k = (B_λᵀ)^k u*``, so its relative error ``‖u* − u_k‖/‖u*‖`` never exceeds
``‖B_λ^k‖₂`` (``gs.spectral.damped_power_norm``) — on every case, normal or not. For a
non-normal J the error exceeds ``ρ(B_λ)^k`` (so the spectral radius alone is not a
bound, and ``gs.theory.steps_needed`` must use the norms); for a normal J, ``‖B_λ^k‖₂ = ρ(B_λ)^k``.

Cases: a normal linear cell, two non-normal linear cells (Schur form with a large
off-diagonal part), and a tanh DEQ cell; k = 1..40, λ ∈ {0.5, 1.0}; worst over random
cotangents. Writes results.csv and neumann_error.png to
analysis/results/neumann_error/. Prints PASS/FAIL.

Run: ``python analysis/neumann_error.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from outputs import output_folder

import gradscope as gs

OUT = pathlib.Path(__file__).parent / "results" / "neumann_error"
DT = torch.float64


def linear(d: int, offdiag: float, seed: int) -> gs.FixedPointProblem:
    g = torch.Generator().manual_seed(seed)
    T = torch.diag((torch.rand(d, generator=g, dtype=DT) * 2 - 1) * 0.7)
    T = T + offdiag * torch.triu(torch.randn(d, d, generator=g, dtype=DT), diagonal=1) / math.sqrt(
        d
    )
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
    Q = q * torch.sign(torch.diagonal(r))
    W = Q @ T @ Q.T
    x = torch.randn(d, generator=g, dtype=DT)
    h = torch.linalg.solve(torch.eye(d, dtype=DT) - W, x)
    return gs.FixedPointProblem.from_function(lambda p, h, x: p["W"] @ h + x, {"W": W}, h, x)


def tanh_cell(d: int, seed: int) -> gs.FixedPointProblem:
    g = torch.Generator().manual_seed(seed)
    p = {
        "W": 1.2 * torch.randn(d, d, generator=g, dtype=DT) / math.sqrt(d),
        "b": torch.randn(d, generator=g, dtype=DT),
    }
    x = torch.randn(3, d, generator=g, dtype=DT)

    def fn(p, h, x):
        return torch.tanh(h @ p["W"].T + x + p["b"])

    fp = gs.find_fixed_point(
        lambda h, x: fn(p, h, x), x, h0=torch.zeros(3, d, dtype=DT), rtol=1e-13
    )
    return gs.FixedPointProblem.from_function(fn, p, fp.value, x)


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer k and cotangents (< 30 s)")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: the committed results folder in full mode, a new "
        "temporary folder in --quick mode, so a quick run never overwrites the results)",
    )
    args = parser.parse_args(argv)
    out = output_folder(args.out, args.quick, OUT, "neumann_error")
    d = 16
    cases = {
        "normal": linear(d, 0.0, 0),
        "non-normal (offdiag 3)": linear(d, 3.0, 1),
        "non-normal (offdiag 6)": linear(d, 6.0, 2),
        "tanh cell": tanh_cell(d, 3),
    }
    ks = list(range(1, 41, 8 if args.quick else 1))
    n_cot = 2 if args.quick else 16
    rows = []
    for name, problem in cases.items():
        g = torch.Generator().manual_seed(7)
        cots = [torch.randn(problem.h_star.shape, generator=g, dtype=DT) for _ in range(n_cot)]
        exacts = [
            gs.estimate_gradient(problem, c, gs.Exact(gs.solvers.Dense())).adjoint for c in cots
        ]
        mu = gs.spectral_radius(problem, gs.spectral.DenseSpectrum()).ritz_values.reshape(-1)
        for lam in (0.5, 1.0):
            rho_B = float((1 - lam * (1 - mu)).abs().max())
            for k in ks:
                errors = []
                for c, u in zip(cots, exacts):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", gs.ConvergenceWarning)
                        uk = gs.estimate_gradient(problem, c, gs.Neumann(k, lam)).adjoint
                    errors.append(
                        float(torch.linalg.vector_norm(uk - u) / torch.linalg.vector_norm(u))
                    )
                norm = gs.spectral.damped_power_norm(
                    problem, lam, k, gs.spectral.DenseSpectrum()
                ).value
                rows.append(
                    {
                        "case": name,
                        "damping": lam,
                        "k": k,
                        "error": max(errors),
                        "norm_Bk": norm,
                        "rho_B_k": rho_B**k,
                    }
                )
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)

    grid = sns.FacetGrid(df, col="case", row="damping", height=2.8, aspect=1.2, sharey=False)
    for (lam, case), ax in grid.axes_dict.items():
        sub = df[(df.case == case) & (df.damping == lam)]
        ax.semilogy(sub.k, sub.norm_Bk, "k-", label="‖B^k‖₂")
        ax.semilogy(sub.k, sub.rho_B_k, "b--", label="ρ(B)^k")
        ax.semilogy(sub.k, sub.error, "r.", label="worst observed ‖u*−u_k‖/‖u*‖")
        ax.set_title(f"{case}, λ={lam:g}", fontsize=9)
    grid.axes[0][0].legend(fontsize=7)
    grid.set_axis_labels("k", "relative adjoint error")
    grid.figure.tight_layout()
    grid.figure.savefig(out / "neumann_error.png", dpi=100)
    plt.close(grid.figure)

    bounded = bool((df.error <= df.norm_Bk * (1 + 1e-8) + 1e-13).all())
    nonnormal = df[df.case.str.startswith("non-normal")]
    beats_rho = bool((nonnormal.error > nonnormal.rho_B_k * 1.5).any())
    normal = df[df.case == "normal"]
    normal_equal = bool(
        ((normal.norm_Bk - normal.rho_B_k).abs() <= 1e-10 + 1e-8 * normal.rho_B_k).all()
    )
    print(
        df.groupby(["case", "damping"])
        .agg(
            max_error_over_norm=("error", lambda s: float((s / df.loc[s.index, "norm_Bk"]).max())),
            max_error_over_rho_k=("error", lambda s: float((s / df.loc[s.index, "rho_B_k"]).max())),
        )
        .to_string()
    )
    print(
        f"error ≤ ‖B^k‖ everywhere: {bounded}; non-normal error > ρ(B)^k somewhere: {beats_rho}; "
        f"normal ‖B^k‖ = ρ^k: {normal_equal}"
    )
    ok = bounded and beats_rho and normal_equal
    print("PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
