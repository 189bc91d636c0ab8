r"""Speed: phantom gradients make the backward and the training step faster than the exact gradient (paper Table 3).

Claim (Geng et al., NeurIPS 2021, Table 3 "speed" column;
docs/explanation/paper_results.rst (theory-paper-figures)): training with the phantom
gradient UPG/NPG A(5, λ) is faster than training with the exact implicit gradient -- the
paper reports 1.4–2.2× (whether for the whole step or the backward alone is not stated,
so both are timed here).

Setting (our choice, stated): the scikit-learn digits DEQ (:class:`gradscope.demo.DigitsDEQ`,
width 48, batch 64, float32, Anderson forward to rtol 1e-4) on one CPU thread, at two
states of the same model: at initialisation and after 300 training steps with AdamW
(lr 5e-3, weight decay 0.05) and NPG(5, 0.5), where ρ(J) has risen (the exact backward's GMRES then
needs more iterations). Backward estimators compared: Exact (per-sample GMRES, rtol 1e-5,
the float32 setting of ``gradscope demo``), UPG(5, 0.5), NPG(5, 0.5) and one-step, each
set as the :class:`gradscope.ImplicitLayer`'s estimator. One round times, for each
estimator on the same batch: the forward, the backward alone (``loss.backward()``) and
the whole training step (zero_grad + forward + loss + backward + SGD step with lr 0, so
every round sees the same model). Rounds are interleaved round-robin (the order rotates
every round) in one process; medians over the rounds.

Checks (the verdict, at the trained state): the median exact/phantom time ratio is > 1
for UPG(5, 0.5) and NPG(5, 0.5), for the backward and for the whole step. The
initialisation state and the one-step gradient are reported. The paper's range
(1.4–2.2×, whole step) is printed next to the measured ratios; the MDEQ-scale numbers
come from ``analysis/gpu_scale.py`` (H100; analysis/README.md), not rerun here.

Outputs (default ``analysis/results/bench_speed/``): ``times.csv`` (every timed run),
``summary.csv`` (medians, ratios, VJPs, cosine to exact), ``bench_speed.png``. Exit code
0 on PASS, 1 on FAIL.

Usage::

    python analysis/bench_speed.py                          # full: 40 rounds, ~1 min
    python analysis/bench_speed.py --quick --out /tmp/bs    # 6 rounds, seconds
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from outputs import output_folder

import gradscope as gs

WIDTH, BATCH = 48, 64
ESTIMATORS = {
    "exact": gs.Exact(gs.solvers.GMRES(rtol=1e-5)),
    "UPG(5, 0.5)": gs.Unrolled(5, 0.5),
    "NPG(5, 0.5)": gs.Neumann(5, 0.5),
    "one-step": gs.OneStep(),
}
PAPER = (1.4, 2.2)
RESULTS = Path(__file__).resolve().parent / "results" / "bench_speed"


def trained_model(data: gs.demo.DigitsData, steps: int, seed: int = 0) -> gs.demo.DigitsDEQ:
    """A DigitsDEQ after ``steps`` training steps with AdamW (lr 5e-3, weight decay 0.05) and NPG(5, 0.5)."""
    torch.manual_seed(seed)
    model = gs.demo.DigitsDEQ(width=WIDTH, estimator=gs.Neumann(5, 0.5))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.05)
    generator = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gs.ConvergenceWarning)
        for _ in range(steps):
            index = torch.randint(0, len(data.y_train), (BATCH,), generator=generator)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(data.x_train[index]), data.y_train[index]).backward()
            opt.step()
    return model


def rho_j(model: gs.demo.DigitsDEQ, x: torch.Tensor) -> float:
    """ρ(J) (max over the batch) at the model's equilibrium for x."""
    with torch.no_grad():
        z = model.project(x)
    fp = gs.find_fixed_point(model.layer.cell, z, h0=torch.zeros_like(z), rtol=1e-6, warn=False)
    problem = gs.FixedPointProblem.from_module(model.layer.cell, fp.value, z, check=False)
    return gs.spectral_radius(problem).value


def one_step(model, opt, x, y) -> dict:
    """One timed training step: forward, backward alone, whole step."""
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    return {
        "forward_ms": 1e3 * (t1 - t0),
        "backward_ms": 1e3 * (t2 - t1),
        "step_ms": 1e3 * (t3 - t0),
    }


def bench(
    model: gs.demo.DigitsDEQ, data: gs.demo.DigitsData, state: str, rounds: int
) -> pd.DataFrame:
    """Round-robin timings of every estimator on copies of ``model``."""
    models, opts = {}, {}
    for name, estimator in ESTIMATORS.items():
        m = copy.deepcopy(model)
        m.layer.estimator = estimator
        models[name] = m
        opts[name] = torch.optim.SGD(m.parameters(), lr=0.0, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    names = list(ESTIMATORS)
    rows = []
    for r in range(rounds + 1):  # round 0 is a warm-up, not recorded
        index = torch.randint(0, len(data.y_train), (BATCH,), generator=generator)
        x, y = data.x_train[index], data.y_train[index]
        order = names[r % len(names) :] + names[: r % len(names)]
        grads = {}
        for name in order:
            times = one_step(models[name], opts[name], x, y)
            stats = models[name].layer.last_backward
            grads[name] = torch.cat([p.grad.flatten() for p in models[name].parameters()])
            if r > 0:
                rows.append(
                    {
                        "state": state,
                        "round": r,
                        "estimator": name,
                        **times,
                        "vjps": stats.vjps,
                        "forward_steps": models[name].layer.last_forward.steps,
                    }
                )
        if r > 0:
            for name in names:
                cos = F.cosine_similarity(grads[name], grads["exact"], dim=0).item()
                for row in rows[-len(names) :]:
                    if row["estimator"] == name:
                        row["cosine_to_exact"] = cos
    return pd.DataFrame(rows)


def summarise(times: pd.DataFrame) -> pd.DataFrame:
    """Medians per state and estimator, ratios exact/estimator."""
    rows = []
    for state, part in times.groupby("state", sort=False):
        med = part.groupby("estimator")[["forward_ms", "backward_ms", "step_ms"]].median()
        for name in ESTIMATORS:
            p = part[part["estimator"] == name]
            rows.append(
                {
                    "state": state,
                    "estimator": name,
                    "rounds": len(p),
                    "forward_ms": med.loc[name, "forward_ms"],
                    "backward_ms": med.loc[name, "backward_ms"],
                    "step_ms": med.loc[name, "step_ms"],
                    "backward_speedup": med.loc["exact", "backward_ms"]
                    / med.loc[name, "backward_ms"],
                    "step_speedup": med.loc["exact", "step_ms"] / med.loc[name, "step_ms"],
                    "vjps_median": statistics.median(p["vjps"]),
                    "cosine_to_exact_median": p["cosine_to_exact"].median(),
                    "rho_J": p["rho_J"].iloc[0],
                }
            )
    return pd.DataFrame(rows)


def verdict(summary: pd.DataFrame) -> tuple[bool, list[str]]:
    lines, ok = [], True
    for state, part in summary.groupby("state", sort=False):
        judged = state == "trained"
        for r in part.itertuples():
            if r.estimator == "exact":
                continue
            good = r.backward_speedup > 1 and r.step_speedup > 1
            tag = "ok  " if good else "FAIL"
            if not judged or r.estimator == "one-step":
                tag = "NOTE"
            else:
                ok &= good
            where = (
                "below"
                if r.step_speedup < PAPER[0]
                else "above"
                if r.step_speedup > PAPER[1]
                else "inside"
            )
            lines.append(
                f"{tag}  {state:8s} (ρ(J) = {r.rho_J:.3f}) {r.estimator:12s} backward "
                f"{r.backward_speedup:.2f}× faster, whole step {r.step_speedup:.2f}× "
                f"({where} the paper's {PAPER[0]}–{PAPER[1]}×); "
                f"cosine to exact {r.cosine_to_exact_median:.3f}"
            )
    return ok, lines


def plot(times: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    sns.set_theme(style="whitegrid", context="paper")
    long = times.melt(
        id_vars=["state", "estimator"],
        value_vars=["backward_ms", "step_ms"],
        var_name="what",
        value_name="ms",
    )
    long["what"] = long["what"].map(
        {"backward_ms": "backward only", "step_ms": "whole training step"}
    )
    states = list(times["state"].unique())
    fig, axes = plt.subplots(1, len(states), figsize=(5.2 * len(states), 4.0), squeeze=False)
    for ax, state in zip(axes[0], states):
        part = long[long["state"] == state]
        sns.boxplot(
            data=part,
            x="estimator",
            y="ms",
            hue="what",
            order=list(ESTIMATORS),
            showfliers=False,
            ax=ax,
        )
        s = summary[summary["state"] == state].set_index("estimator")
        for i, name in enumerate(ESTIMATORS):
            if name != "exact":
                ax.text(
                    i,
                    0.98,
                    f"{s.loc[name, 'backward_speedup']:.1f}× / {s.loc[name, 'step_speedup']:.1f}×",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="top",
                    fontsize=7,
                )
        rho = s["rho_J"].iloc[0]
        ax.set_title(f"{state} (ρ(J) = {rho:.2f}); speed-up vs exact: backward / step", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("milliseconds (median, box = quartiles)")
        ax.set_ylim(0, None)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.62, 0.9))
    n = int(times.groupby(["state", "estimator"]).size().min())
    fig.suptitle(
        f"Digits DEQ (width {WIDTH}, batch {BATCH}, float32, 1 CPU thread), {n} interleaved rounds",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 rounds, 40 training steps")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: the committed results; a temporary folder with --quick)",
    )
    parser.add_argument("--from-csv", type=Path, default=None, help="re-summarise times.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rounds = args.rounds or (6 if args.quick else 40)
    train_steps = args.train_steps or (40 if args.quick else 300)
    args.out = output_folder(args.out, args.quick, RESULTS, "bench_speed")
    start = time.perf_counter()
    if args.from_csv is not None:
        times = pd.read_csv(args.from_csv / "times.csv")
        rounds = int(times["round"].max())
    else:
        data = gs.demo.load_digits_tensors(seed=0)
        frames = []
        for state, steps in (("init", 0), ("trained", train_steps)):
            model = trained_model(data, steps)
            frame = bench(model, data, state, rounds)
            frame["rho_J"] = rho_j(model, data.x_train[:BATCH])
            frames.append(frame)
        times = pd.concat(frames, ignore_index=True)
        times.to_csv(args.out / "times.csv", index=False, float_format="%.5g")
    summary = summarise(times)
    summary.to_csv(args.out / "summary.csv", index=False, float_format="%.4f")
    plot(times, summary, args.out / "bench_speed.png")
    print(
        f"{rounds} rounds per state in {time.perf_counter() - start:.1f} s (trained: {train_steps} steps)"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    ok, lines = verdict(summary)
    print("\n".join(lines))
    print(f"outputs in {args.out}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
