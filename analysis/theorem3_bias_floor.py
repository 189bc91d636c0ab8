r"""SGD with an ε-biased gradient oracle stalls at a bias floor set by ε (paper Theorem 3).

Claim (Geng et al., NeurIPS 2021, Theorem 3; docs/explanation/theorem1.rst
(theory-theorem3)): for an ℓ-smooth loss R with an unbiased stochastic gradient of
bounded covariance, SGD driven by an oracle with
``‖∇̂ − ∇R‖ ≤ ε`` and steps ``η_n = η₀/√n`` satisfies

    Q_N(ε) := Σ_{n≤N} η_n ‖∇R(θ_n)‖² / Σ_{n≤N} η_n  ≤  O(ε + log N / √N).

So the bias of a phantom gradient leaves a floor that more steps do not remove, and
that floor is controlled by ε alone: the quantity to monitor is ‖∇̂ − ∇‖.

Setting (smooth synthetic objective, numpy): ``R(θ) = ½ (θ − θ*)ᵀ A (θ − θ*)`` in
p = 20 dimensions, A = Q diag(a) Qᵀ with eigenvalues a log-spaced in [0.1, 1] (so
ℓ = 1, μ = 0.1), a random Q, θ* and start ``θ₁ = θ* + unit vector`` per seed; oracle
``∇̂(θ) = ∇R(θ) + ε b(θ) + σ ξ_n`` with ξ_n ~ N(0, I), σ = 0.1 (unbiased noise, covariance
σ² I), η₀ = 1, and two bias fields of norm exactly ε:

* ``fixed``: b = a random unit vector, the same for all n (per seed);
* ``against``: b(θ) = −∇R(θ)/‖∇R(θ)‖, the bias that cancels as much descent as it can.

What is plotted, and what theory predicts for it [derived, ours]:

* ``Q_N(ε)``, the theorem's quantity, for N = 10³, 10⁴, 10⁵ (left panel). At small ε
  it is the ε-free ``log N/√N`` part and falls with N; at large ε the curves for all N
  merge: the bias floor does not shrink with more steps.
* the *floor* ``F(ε)``: the same η-weighted average over the second half of the run
  only, n ∈ (N/2, N], which removes the start-up transient (right panel). For both
  bias fields the biased gradient flow θ' = −(∇R + εb) comes to rest where
  ``‖∇R‖ = ε`` (fixed: at θ* − εA⁻¹b; against: on the level set ‖∇R‖ = ε), and more
  generally along any recurrent trajectory of that flow ∫‖∇R‖² = −ε∫⟨∇R, b⟩ ≤
  ε∫‖∇R‖, hence avg ‖∇R‖² ≤ ε². So in the small-step limit the floor of the *squared*
  gradient norm is exactly ε² (slope 2 on log-log) -- tighter than, and consistent
  with, the theorem's O(ε) upper bound for ε ≤ 1 -- plus a noise term
  ≈ σ² η_n tr(A)/2 that vanishes as η_n → 0 and dominates at the smallest ε.

Checks (the verdict), on the median over seeds, for each bias field:

1. F(ε) is non-decreasing in ε (relative tolerance 2 %).
2. On the bias-dominated points (ε² ≥ 10 F(0)), the fitted log-log slope of F vs ε is
   2 ± 0.1 (at least 4 points).
3. On those points F(ε)/ε² ∈ [0.8, 1.25] (the floor is ε², not merely ∝ ε²).
4. At the largest ε, Q_N changes by less than 25 % from N = 10⁴ to N = 10⁵ (the bias
   floor does not go away with N) while at ε = 0 it falls by more than 2× (the
   log N/√N part does).

Outputs ``floor.csv`` (one row per bias field, ε, seed: F and Q_N for each N),
``summary.csv`` (medians, quantiles) and ``bias_floor.png``. Exit code 0 on PASS.

Usage::

    python analysis/theorem3_bias_floor.py                 # full: 16 seeds, N = 10⁵
    python analysis/theorem3_bias_floor.py --quick --out /tmp/t3   # 4 seeds, N = 10⁴
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from outputs import output_folder

DIM = 20
EIG_RANGE = (0.1, 1.0)
SIGMA = 0.1
ETA0 = 1.0
BIASES = ("fixed", "against")
RESULTS = Path(__file__).resolve().parent / "results" / "theorem3_bias_floor"


def problems(seeds: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (S, p, p) SPD with eigenvalues log-spaced in EIG_RANGE, θ₁ − θ* (S, p), b (S, p)."""
    eigs = np.geomspace(*EIG_RANGE, DIM)
    Q, _ = np.linalg.qr(rng.standard_normal((seeds, DIM, DIM)))
    A = Q @ (eigs[:, None] * np.swapaxes(Q, 1, 2))
    e0 = rng.standard_normal((seeds, DIM))
    e0 /= np.linalg.norm(e0, axis=1, keepdims=True)
    b = rng.standard_normal((seeds, DIM))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return A, e0, b


def run_sgd(
    epsilons: np.ndarray, seeds: int, steps: int, checkpoints: list[int], seed: int = 0
) -> pd.DataFrame:
    """Run biased SGD for every (bias field, ε, seed) at once; return per-run averages.

    The state is the error e = θ − θ*, so ∇R = A e. Common random numbers: every ε and
    bias field of one seed sees the same problem, start and noise sequence.
    """
    rng = np.random.default_rng(seed)
    A, e0, b_fixed = problems(seeds, rng)
    n_eps, n_bias = len(epsilons), len(BIASES)
    # Runs laid out as (S, bias, eps, p) and flattened to (S, M, p) for one batched matmul.
    e = np.broadcast_to(e0[:, None, None, :], (seeds, n_bias, n_eps, DIM)).copy()
    eps = np.broadcast_to(epsilons[None, :, None], (n_bias, n_eps, 1))
    e = e.reshape(seeds, n_bias * n_eps, DIM)
    is_fixed = (np.arange(n_bias) == BIASES.index("fixed"))[:, None, None]
    full_sum = np.zeros(e.shape[:2])
    tail_sum = np.zeros(e.shape[:2])
    eta_sum, eta_tail = 0.0, 0.0
    out = {}
    for n in range(1, steps + 1):
        eta = ETA0 / np.sqrt(n)
        grad = e @ A  # A symmetric: rows of e times A = (A e)ᵀ
        sq = np.einsum("smp,smp->sm", grad, grad)
        full_sum += eta * sq
        eta_sum += eta
        if n > steps // 2:
            tail_sum += eta * sq
            eta_tail += eta
        g4 = grad.reshape(seeds, n_bias, n_eps, DIM)
        unit = -g4 / np.maximum(np.linalg.norm(g4, axis=-1, keepdims=True), 1e-300)
        bias = eps * np.where(is_fixed, b_fixed[:, None, None, :], unit)
        noise = SIGMA * rng.standard_normal((seeds, 1, 1, DIM))  # same ξ_n for every run
        e = e - eta * (g4 + bias + noise).reshape(e.shape)
        if n in checkpoints:
            out[n] = (full_sum / eta_sum).copy()
    rows = []
    for s in range(seeds):
        for i, bias_name in enumerate(BIASES):
            for j, epsilon in enumerate(epsilons):
                m = i * n_eps + j
                row = {"bias": bias_name, "epsilon": epsilon, "seed": s}
                row["floor"] = tail_sum[s, m] / eta_tail
                for N in checkpoints:
                    row[f"Q_{N}"] = out[N][s, m]
                rows.append(row)
    return pd.DataFrame(rows)


def fit_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def verdict(df: pd.DataFrame, checkpoints: list[int]) -> tuple[bool, list[str], dict]:
    """The four checks of the docstring; returns (passed, report lines, fitted numbers)."""
    ok, lines, fitted = True, [], {}
    med = df.groupby(["bias", "epsilon"]).median(numeric_only=True).reset_index()
    n_mid, n_max = checkpoints[-2], checkpoints[-1]
    for bias_name in BIASES:
        part = med[med["bias"] == bias_name].sort_values("epsilon")
        eps, floor = part["epsilon"].to_numpy(), part["floor"].to_numpy()
        floor0 = float(floor[eps == 0][0])
        pos = eps > 0
        mono = bool(np.all(np.diff(floor) >= -0.02 * floor[1:]))
        dominated = pos & (eps**2 >= 10 * floor0)
        slope = fit_slope(eps[dominated], floor[dominated]) if dominated.sum() >= 2 else np.nan
        ratio = floor[dominated] / eps[dominated] ** 2
        q_big = part[f"Q_{n_max}"].iloc[-1] / part[f"Q_{n_mid}"].iloc[-1]
        q_zero = part[f"Q_{n_mid}"].iloc[0] / part[f"Q_{n_max}"].iloc[0]
        checks = {
            "monotone": mono,
            "slope": dominated.sum() >= 4 and abs(slope - 2) <= 0.1,
            "floor = ε²": dominated.sum() >= 1 and bool(np.all((ratio >= 0.8) & (ratio <= 1.25))),
            "N-independence": abs(q_big - 1) < 0.25 and q_zero > 2,
        }
        fitted[bias_name] = {
            "floor(0)": floor0,
            "slope": slope,
            "points": int(dominated.sum()),
            "eps_range": (float(eps[dominated].min()), float(eps[dominated].max()))
            if dominated.any()
            else (np.nan, np.nan),
            "ratio": (float(ratio.min()), float(ratio.max())) if dominated.any() else (np.nan,) * 2,
        }
        f = fitted[bias_name]
        lines.append(
            f"[{bias_name}] floor(ε=0) = {floor0:.2e}; slope of F vs ε over {f['points']} points "
            f"ε ∈ [{f['eps_range'][0]:.3g}, {f['eps_range'][1]:.3g}] = {slope:.3f} (theory 2); "
            f"F/ε² ∈ [{f['ratio'][0]:.3f}, {f['ratio'][1]:.3f}] (theory 1); "
            f"Q_N(ε_max) ratio N={n_max}/N={n_mid}: {q_big:.3f}; Q_N(0) falls {q_zero:.2f}×"
        )
        for name, passed in checks.items():
            lines.append(f"  {'ok  ' if passed else 'FAIL'}  {name}")
            ok &= passed
    return ok, lines, fitted


def plot(df: pd.DataFrame, checkpoints: list[int], path: Path) -> None:
    """Left: the theorem's Q_N(ε) per N; right: the floor F(ε) against ε² (log-log, bands)."""
    sns.set_theme(style="whitegrid", context="paper")
    pos = df[df["epsilon"] > 0]
    long = pos.melt(
        id_vars=["bias", "epsilon", "seed"],
        value_vars=[f"Q_{N}" for N in checkpoints],
        var_name="N",
        value_name="Q",
    )
    long["N"] = long["N"].str.slice(2).astype(int)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True)
    eps_line = np.geomspace(pos["epsilon"].min(), pos["epsilon"].max(), 50)
    for row, bias_name in enumerate(BIASES):
        ax = axes[row, 0]
        sns.lineplot(
            data=long[long["bias"] == bias_name],
            x="epsilon",
            y="Q",
            hue="N",
            palette="crest",
            errorbar=("pi", 80),
            estimator="median",
            marker="o",
            ax=ax,
        )
        ax.plot(eps_line, eps_line**2, "k--", lw=0.8, label="ε² (floor, slope 2)")
        ax.plot(eps_line, eps_line, "k:", lw=0.8, label="ε (bound's shape, slope 1)")
        ax.set(
            xscale="log", yscale="log", xlabel="bias ε = ‖∇̂ − ∇R‖", ylabel="Q_N (theorem's average)"
        )
        ax.set_title(f"{bias_name} bias: Σ η_n‖∇R(θ_n)‖² / Σ η_n, n ≤ N")
        ax.legend(title="N", fontsize=8)
        ax = axes[row, 1]
        part = df[df["bias"] == bias_name]
        sns.lineplot(
            data=part[part["epsilon"] > 0],
            x="epsilon",
            y="floor",
            errorbar=("pi", 80),
            estimator="median",
            marker="o",
            color="C3",
            label="floor F(ε), median, 80 % band",
            ax=ax,
        )
        floor0 = part.loc[part["epsilon"] == 0, "floor"].median()
        ax.axhline(floor0, color="grey", ls=":", label=f"F(0) = {floor0:.1e} (noise)")
        ax.plot(eps_line, eps_line**2, "k--", lw=0.8, label="ε² (theory, slope 2)")
        ax.set(xscale="log", yscale="log", xlabel="bias ε = ‖∇̂ − ∇R‖", ylabel="floor F(ε)")
        ax.set_title(f"{bias_name} bias: same average over n ∈ (N/2, N], N = {checkpoints[-1]}")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Theorem 3 bias floor: SGD, η_n = {ETA0:g}/√n, quadratic p = {DIM}, "
        f"eig(A) ∈ {list(EIG_RANGE)}, noise σ = {SIGMA}, {df['seed'].nunique()} seeds"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds, N = 10⁴")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: the committed results; a temporary folder with --quick)",
    )
    args = parser.parse_args(argv)
    seeds, checkpoints = (4, [100, 1_000, 10_000]) if args.quick else (16, [1_000, 10_000, 100_000])
    epsilons = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 13)])

    start = time.perf_counter()
    df = run_sgd(epsilons, seeds, checkpoints[-1], checkpoints)
    ok, lines, _ = verdict(df, checkpoints)

    args.out = output_folder(args.out, args.quick, RESULTS, "theorem3_bias_floor")
    df.to_csv(args.out / "floor.csv", index=False, float_format="%.6g")
    summary = (
        df.groupby(["bias", "epsilon"])
        .agg(
            floor_median=("floor", "median"),
            floor_q10=("floor", lambda v: v.quantile(0.1)),
            floor_q90=("floor", lambda v: v.quantile(0.9)),
            **{f"Q_{N}_median": (f"Q_{N}", "median") for N in checkpoints},
        )
        .reset_index()
    )
    summary.to_csv(args.out / "summary.csv", index=False, float_format="%.6g")
    plot(df, checkpoints, args.out / "bias_floor.png")

    print(
        f"{seeds} seeds × {len(epsilons)} ε × {len(BIASES)} bias fields, N = {checkpoints[-1]}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\n".join(lines))
    print(f"outputs in {args.out}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
