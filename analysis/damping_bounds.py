"""The damping limit λ_max predicts exactly where the Neumann phantom gradient (NPG) diverges.

Claim [derived, docs/explanation/damping.rst (theory-damping)]: the k-step Neumann
series with damping λ converges as k → ∞ iff ``λ < λ_max = min_μ 2(1 − Re μ)/|1 − μ|²`` (``gs.theory.damping_limit``). On random
linear cells ``F(h) = W h + b + x`` whose J = W has eigenvalues with negative real part
or complex outliers (so λ_max < 1), NPG(k = 300, λ) is observed to converge to the exact
gradient (relative error < 1e-4) for every λ with ρ(B_λ) < 0.95 and to diverge
(relative error > 1) for every λ with ρ(B_λ) > 1.03; λ's in between converge too slowly
to call at k = 300 and are not scored. ``gs.theory.optimal_damping`` is drawn for reference.

Writes results.csv and damping.png to analysis/results/damping_bounds/. Prints PASS/FAIL.

Run: ``python analysis/damping_bounds.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from outputs import output_folder

import gradscope as gs

OUT = pathlib.Path(__file__).parent / "results" / "damping_bounds"
DT = torch.float64


def problem_with_spectrum(seed: int, d: int = 8) -> tuple[gs.FixedPointProblem, torch.Tensor]:
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    T = torch.zeros(d, d, dtype=DT)
    mu = list(rng.uniform(-0.5, 0.8, size=d))
    T.diagonal().copy_(torch.tensor(mu, dtype=DT))
    if seed % 2 == 0:  # a real outlier far left: μ ∈ [−4, −1.2]
        T[0, 0] = -rng.uniform(1.2, 4.0)
    else:  # a complex pair with |1 − μ| large
        r, phi = rng.uniform(1.0, 2.5), rng.uniform(1.6, 2.9)
        T[0, 0] = T[1, 1] = r * math.cos(phi)
        T[0, 1], T[1, 0] = -r * math.sin(phi), r * math.sin(phi)
    q, rr = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
    Q = q * torch.sign(torch.diagonal(rr))
    W = Q @ T @ Q.T
    x = torch.randn(d, generator=g, dtype=DT)
    h = torch.linalg.solve(torch.eye(d, dtype=DT) - W, x)

    def fn(p, h, x):
        return p["W"] @ h + p["b"] + x

    problem = gs.FixedPointProblem.from_function(fn, {"W": W, "b": torch.zeros(d, dtype=DT)}, h, x)
    return problem, torch.randn(d, generator=g, dtype=DT)


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 problems (< 30 s)")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: the committed results folder in full mode, a new "
        "temporary folder in --quick mode, so a quick run never overwrites the results)",
    )
    args = parser.parse_args(argv)
    out = output_folder(args.out, args.quick, OUT, "damping_bounds")
    n_problems, k = (6, 300) if args.quick else (60, 300)
    grid = np.linspace(0.02, 1.0, 15 if args.quick else 50)
    rows = []
    for seed in range(n_problems):
        problem, g = problem_with_spectrum(seed)
        limit = gs.theory.damping_limit(problem, dense=True)
        best = gs.theory.optimal_damping(problem, dense=True)
        mu = gs.spectral_radius(problem, gs.spectral.DenseSpectrum()).eigenvalues.reshape(-1)
        exact = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.Dense()))
        for lam in grid:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", gs.ConvergenceWarning)
                npg = gs.estimate_gradient(problem, g, gs.Neumann(k, float(lam)))
            rel = gs.compare(npg, exact).relative_error
            rel = rel if math.isfinite(rel) else math.inf
            rho_B = float((1 - lam * (1 - mu)).abs().max())
            predicted = limit.admits(float(lam))
            scored = rho_B < 0.95 or rho_B > 1.03
            observed = rel < 1e-4 if rho_B < 1 else not (rel <= 1)
            rows.append(
                {
                    "problem": seed,
                    "damping": lam,
                    "lambda_max": limit.value,
                    "lambda_opt": best.damping,
                    "rho_B": rho_B,
                    "relative_error": rel,
                    "predicted_converges": predicted,
                    "scored": scored,
                    "agrees": (not scored) or (predicted == (rho_B < 1) and observed),
                }
            )
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for seed in range(min(4, n_problems)):
        sub = df[df.problem == seed]
        (line,) = axes[0].semilogy(
            sub.damping, sub.relative_error.clip(upper=1e30), marker=".", label=f"problem {seed}"
        )
        axes[0].axvline(sub.lambda_max.iloc[0], color=line.get_color(), ls="--", lw=1)
        axes[0].axvline(sub.lambda_opt.iloc[0], color=line.get_color(), ls=":", lw=1)
    axes[0].set_xlabel("damping λ")
    axes[0].set_ylabel(f"relative error of NPG({k}, λ) vs exact")
    axes[0].set_title("dashed: λ_max (damping_limit), dotted: optimal λ")
    axes[0].legend(fontsize=8)
    x = df.damping / df.lambda_max
    colors = np.where(
        df.relative_error < 1e-4,
        "tab:green",
        np.where(df.relative_error > 1, "tab:red", "tab:orange"),
    )
    axes[1].scatter(x, df.rho_B, c=colors, s=6)
    axes[1].axvline(1.0, color="k", ls="--", lw=1)
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set_xlabel("λ / λ_max")
    axes[1].set_ylabel("ρ(B_λ)")
    axes[1].set_title("green: converged, red: diverged, orange: in between")
    fig.tight_layout()
    fig.savefig(out / "damping.png", dpi=110)
    plt.close(fig)

    scored = df[df.scored]
    ok = bool(scored.agrees.all()) and bool((~scored.predicted_converges).any())
    print(
        f"problems={n_problems} points={len(df)} scored={len(scored)} "
        f"disagreements={int((~scored.agrees).sum())} diverged={int((scored.relative_error > 1).sum())}"
    )
    print("PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
