"""GPU scale: gradscope on an MDEQ-style multiscale convolutional DEQ with CIFAR-10 shapes.

Claim (issue 7, "GPU scale"): the tools hold up on a DEQ of realistic size — four
resolutions (32, 16, 8, 4), group norm, weight norm, ≈10M parameters, a batch of 128
images of 3×32×32. For the exact gradient (per-sample GMRES), UPG(5, 0.5) and
NPG(5, 0.5) we measure the backward time, the whole training-step time (forward solve +
backward), the peak memory, the cosine to the exact gradient, and ρ(J) by Arnoldi with
its cost; and the overhead of a GradientMonitor.

Verdict PASS when: the exact solve converges (certified residual), both phantoms are
ascent directions (⟨∇̂, ∇⟩ > 0), both are faster than the exact backward, and NPG's peak
memory is no larger than UPG's. The paper (Geng et al. 2021, Table 3) reports 1.4–1.7×
whole-step speed-ups for MDEQ; we report what we measure.

Data: ``--cifar DIR`` reads a real CIFAR-10 python folder (``data_batch_1`` …); without
it the script generates data of the same shape and says so: timings and memory are then
representative, accuracy numbers are not.

Usage::

    python analysis/gpu_scale.py --device cuda            # full setting (≈10M parameters)
    python analysis/gpu_scale.py --smoke                  # CPU smoke mode (small widths)
    python analysis/gpu_scale.py --plot-from results/gpu_scale/h100/run3_gpu_scale.csv

Writes ``gpu_scale.csv``, ``gpu_scale_facts.json`` and ``gpu_scale.png`` (backward time,
whole-step time, peak memory and cosine to the exact gradient per estimator) into
``--out``; ``--plot-from RUN.csv`` only redraws the figure of an existing run as
``RUN.png`` next to it (reading ``RUN_facts.json`` for the title when it is there).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pickle
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from torch import nn

import gradscope as gs

RESULTS = Path(__file__).parent / "results" / "gpu_scale"


# ---------------------------------------------------------------------------- the model
class WNConv2d(nn.Module):
    """A weight-normalised convolution, ``w = g · v / ‖v‖`` per output channel (no bias)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        v = torch.empty(c_out, c_in, kernel, kernel)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.v = nn.Parameter(v)
        self.g = nn.Parameter(v.flatten(1).norm(dim=1))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.v * (self.g / self.v.flatten(1).norm(dim=1))[:, None, None, None]
        return F.conv2d(x, w, stride=self.stride, padding=self.v.shape[-1] // 2)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels, affine=True)


class Branch(nn.Module):
    """MDEQ's residual block on one resolution: ``relu(gn2(conv2(relu(gn1(conv1 z)))) + z)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.gn1 = WNConv2d(c, c), group_norm(c)
        self.conv2, self.gn2 = WNConv2d(c, c), group_norm(c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.gn1(self.conv1(z)))
        return F.relu(self.gn2(self.conv2(y)) + z)


class MultiscaleCell(nn.Module):
    """F(h, x): one MDEQ step on a state that packs every resolution into one tensor.

    ``F(h, x)_i = GN_i(relu(c · Σ_j fuse_{j→i}(block_j(h_j)) + x_i))`` for the branches i,
    with ``c_i = width · 2^i`` channels at resolution ``r_i = 32 / 2^i``; the state and
    the injection x are ``(batch, Σ c_i r_i²)``. Samples are independent (group norm
    is per sample). Every path from h passes through a group norm, which makes the
    blocks blind to the scale of h; the state gain ``c`` (0.3) is what keeps ρ(J) < 1
    at initialisation (measured: ρ(J) ≈ 0.84 at width 8; with c = 1, ρ(J) ≈ 1.25 and
    the forward iteration does not converge — MDEQs rely on Jacobian regularisation
    or early stopping there).
    """

    def __init__(
        self, width: int = 64, branches: int = 4, resolution: int = 32, gain: float = 0.3
    ) -> None:
        super().__init__()
        self.channels = [width * 2**i for i in range(branches)]
        self.sizes = [resolution // 2**i for i in range(branches)]
        self.gain = gain
        self.blocks = nn.ModuleList(Branch(c) for c in self.channels)
        fuse = {}
        for i, ci in enumerate(self.channels):
            for j, cj in enumerate(self.channels):
                if j < i:  # higher resolution j → lower i: (i − j) strided convs
                    layers: list[nn.Module] = []
                    c = cj
                    for step in range(i - j):
                        out = ci if step == i - j - 1 else c
                        layers += [WNConv2d(c, out, 3, stride=2), group_norm(out)]
                        if step < i - j - 1:
                            layers.append(nn.ReLU())
                        c = out
                    fuse[f"{j}to{i}"] = nn.Sequential(*layers)
                elif j > i:  # lower resolution j → higher i: 1×1 conv, then upsample
                    fuse[f"{j}to{i}"] = nn.Sequential(WNConv2d(cj, ci, 1), group_norm(ci))
        self.fuse = nn.ModuleDict(fuse)
        self.post = nn.ModuleList(group_norm(c) for c in self.channels)

    def state_size(self) -> int:
        return sum(c * s * s for c, s in zip(self.channels, self.sizes))

    def unpack(self, h: torch.Tensor) -> list[torch.Tensor]:
        parts = torch.split(h, [c * s * s for c, s in zip(self.channels, self.sizes)], dim=1)
        return [p.reshape(h.shape[0], c, s, s) for p, c, s in zip(parts, self.channels, self.sizes)]

    @staticmethod
    def pack(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.flatten(1) for p in parts], dim=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = [block(z) for block, z in zip(self.blocks, self.unpack(h))]
        injections = self.unpack(x)
        out = []
        for i in range(len(y)):
            total = y[i]
            for j in range(len(y)):
                if j < i:
                    total = total + self.fuse[f"{j}to{i}"](y[j])
                elif j > i:
                    up = self.fuse[f"{j}to{i}"](y[j])
                    total = total + F.interpolate(up, scale_factor=2 ** (j - i), mode="nearest")
            out.append(self.post[i](F.relu(self.gain * total + injections[i])))
        return self.pack(out)


class Stem(nn.Module):
    """The input injection: a conv at 32×32, then strided convs down to each branch."""

    def __init__(self, cell: MultiscaleCell) -> None:
        super().__init__()
        c = cell.channels
        self.first = nn.Sequential(WNConv2d(3, c[0]), group_norm(c[0]), nn.ReLU())
        self.down = nn.ModuleList(
            nn.Sequential(WNConv2d(c[i], c[i + 1], 3, stride=2), group_norm(c[i + 1]))
            for i in range(len(c) - 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        parts = [self.first(images)]
        for down in self.down:
            parts.append(down(parts[-1]))
        return MultiscaleCell.pack(parts)


class MDEQ(nn.Module):
    """Stem → multiscale DEQ cell (solved by gradscope) → pooled linear head."""

    def __init__(self, width: int = 64, branches: int = 4) -> None:
        super().__init__()
        self.cell = MultiscaleCell(width, branches)
        self.stem = Stem(self.cell)
        self.head = nn.Linear(sum(self.cell.channels), 10)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        pooled = [z.mean(dim=(2, 3)) for z in self.cell.unpack(h)]
        return self.head(torch.cat(pooled, dim=1))


# ---------------------------------------------------------------------------- the data
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def load_cifar10(folder: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``count`` images from a CIFAR-10 python folder (``data_batch_1`` …), normalised."""
    images, labels = [], []
    for path in sorted(folder.glob("data_batch_*")):
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(torch.as_tensor(batch[b"data"]).reshape(-1, 3, 32, 32))
        labels.append(torch.as_tensor(batch[b"labels"]))
        if sum(len(x) for x in labels) >= count:
            break
    if not images:
        raise SystemExit(
            f"gpu_scale: no data_batch_* files in {folder}; expected a CIFAR-10 python folder."
        )
    x = torch.cat(images)[:count].float() / 255.0
    mean = torch.tensor(CIFAR_MEAN)[None, :, None, None]
    std = torch.tensor(CIFAR_STD)[None, :, None, None]
    return (x - mean) / std, torch.cat(labels)[:count].long()


def make_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    if args.cifar:
        x, y = load_cifar10(Path(args.cifar), args.batch)
        return x, y, f"CIFAR-10 from {args.cifar}"
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    return x, y, "synthetic data of CIFAR-10 shape (no --cifar folder given)"


# ---------------------------------------------------------------------------- measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solve_forward(model: MDEQ, x_inj: torch.Tensor, args) -> gs.fixed_point.FixedPointResult:
    h0 = x_inj.new_zeros(x_inj.shape[0], model.cell.state_size())
    return gs.find_fixed_point(
        model.cell, x_inj, h0=h0, rtol=args.forward_rtol, max_steps=args.forward_steps, warn=False
    )


def cotangent(
    model: MDEQ, h_star: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, float]:
    h = h_star.detach().requires_grad_(True)
    loss = F.cross_entropy(model.logits(h), labels)
    (g,) = torch.autograd.grad(loss, h)
    return g, float(loss.detach())


def training_step(model: MDEQ, images, labels, estimator, optimizer, args) -> dict:
    """One step: stem, forward solve, loss, gradscope backward, optimizer step. Timed."""
    device = images.device
    sync(device)
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    x_inj = model.stem(images)
    fp = solve_forward(model, x_inj.detach(), args)
    h = fp.value.detach().requires_grad_(True)
    loss = F.cross_entropy(model.logits(h), labels)
    loss.backward()  # head gradients and g = ∂ℓ/∂h*
    sync(device)
    t1 = time.perf_counter()
    problem = gs.FixedPointProblem.from_module(model.cell, fp.value, x_inj.detach(), check=False)
    sync(device)
    t2 = time.perf_counter()  # (the residual check of the problem is diagnostics, not training)
    estimate = gs.estimate_gradient(problem, h.grad, estimator)
    for name, p in model.cell.named_parameters():
        p.grad = estimate.grads[name]
    x_inj.backward(estimate.input_grads[0])
    optimizer.step()
    sync(device)
    t3 = time.perf_counter()
    return {
        "step_seconds": (t1 - t0) + (t3 - t2),
        "forward_seconds": t1 - t0,
        "backward_seconds": t3 - t2,
        "forward_steps": fp.steps,
        "forward_residual": fp.residual,
        "loss": float(loss.detach()),
    }


def measure(args: argparse.Namespace) -> tuple[list[dict], dict]:
    device = torch.device(args.device)
    if device.type == "cuda":
        # TF32 convolutions and matmuls (PyTorch's default for cuDNN) carry ~1e-3 relative
        # error per product: no float32 solve reaches rtol 1e-4 with them (measured on an
        # H100, see docs: large states). We measure in true float32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(args.seed)
    model = MDEQ(args.width, args.branches).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_cell = sum(p.numel() for p in model.cell.parameters())
    images, labels, source = make_data(args)
    images, labels = images.to(device), labels.to(device)
    print(f"data: {source}")
    print(
        f"model: width {args.width}, {args.branches} branches, {n_params / 1e6:.2f}M parameters "
        f"({n_cell / 1e6:.2f}M in the DEQ cell), state {model.cell.state_size()} per sample, batch {args.batch}"
    )
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")

    # A few NPG training steps first, so that we measure a model that has started to train.
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for _ in range(args.warmup_steps):
        training_step(model, images, labels, gs.Neumann(5, 0.5), optimizer, args)

    with torch.no_grad():
        x_inj = model.stem(images)
    fp = solve_forward(model, x_inj, args)
    print(f"forward solve: {fp}")
    g, loss = cotangent(model, fp.value, labels)
    estimators = {
        "exact": gs.Exact(
            gs.solvers.GMRES(rtol=args.exact_rtol, per_sample=True, max_steps=args.exact_steps)
        ),
        "UPG(5,0.5)": gs.Unrolled(5, 0.5),
        "NPG(5,0.5)": gs.Neumann(5, 0.5),
    }
    rows: dict[str, dict] = {}
    estimates = {}
    for name, est in estimators.items():
        times, peaks = [], []
        for _ in range(args.repeats):
            problem = gs.FixedPointProblem.from_module(model.cell, fp.value, x_inj, check=False)
            estimate = gs.estimate_gradient(problem, g, est)
            times.append(estimate.cost.seconds)
            peaks.append(estimate.cost.peak_cuda_bytes or 0)
            del problem
        estimates[name] = estimate
        rows[name] = {
            "estimator": name,
            "backward_ms": 1e3 * statistics.median(times),
            "vjps": estimate.cost.vjps,
            "graph_MiB": estimate.cost.graph_bytes / 2**20,
            "peak_backward_MiB": max(peaks) / 2**20 if device.type == "cuda" else float("nan"),
        }
        if estimate.solution is not None:
            rows[name]["exact_residual"] = estimate.solution.residual
            rows[name]["exact_converged"] = estimate.solution.converged
    for name in estimators:
        comparison = gs.compare(estimates[name], estimates["exact"])
        rows[name]["cosine_to_exact"] = comparison.cosine
        rows[name]["relative_error"] = comparison.relative_error
        rows[name]["ascent"] = comparison.ascent

    # Whole training steps (copies of the model so that each estimator starts alike).
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, est in estimators.items():
        model.load_state_dict(state)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        steps = [training_step(model, images, labels, est, opt, args) for _ in range(args.repeats)]
        rows[name]["step_ms"] = 1e3 * statistics.median(s["step_seconds"] for s in steps)
        rows[name]["forward_ms"] = 1e3 * statistics.median(s["forward_seconds"] for s in steps)
    model.load_state_dict(state)

    exact_ms, exact_step = rows["exact"]["backward_ms"], rows["exact"]["step_ms"]
    for r in rows.values():
        r["backward_speedup_vs_exact"] = exact_ms / r["backward_ms"]
        r["step_speedup_vs_exact"] = exact_step / r["step_ms"]

    extra = spectral_facts(model, fp.value, x_inj, args)
    extra.update(monitor_overhead(model, images, labels, args))
    extra.update(
        {
            "params": n_params,
            "cell_params": n_cell,
            "width": args.width,
            "batch": args.batch,
            "repeats": args.repeats,
            "data": source,
            "loss": loss,
            "forward_steps": fp.steps,
            "forward_residual": fp.residual,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        }
    )
    return list(rows.values()), extra


def spectral_facts(model: MDEQ, h_star, x_inj, args) -> dict:
    """ρ(J) by per-sample Arnoldi (gradscope.spectral_radius), with its cost."""
    problem = gs.FixedPointProblem.from_module(model.cell, h_star, x_inj, check=False)
    rho = gs.spectral_radius(problem)
    return {
        "rho_J": rho.value,
        "rho_J_median_over_samples": float(rho.per_sample.median()),
        "rho_matvecs_per_sample": rho.matvecs,
        "rho_seconds": rho.seconds,
        "rho_converged": rho.converged,
        "rho_max_ritz_residual": rho.max_residual,
    }


def monitor_overhead(model: MDEQ, images, labels, args) -> dict:
    """The cost of one GradientMonitor observation against one NPG training step.

    One observation = the exact gradient + UPG(5, 0.5) + OneStep + the training NPG, all
    compared with the exact one. The overhead of monitoring every N steps is
    observation / (N × step).
    """
    device = images.device
    state = {k: v.clone() for k, v in model.state_dict().items()}
    monitor = gs.GradientMonitor(
        estimators=[gs.Unrolled(5, 0.5), gs.OneStep()],
        exact=gs.Exact(
            gs.solvers.GMRES(rtol=args.exact_rtol, per_sample=True, max_steps=args.exact_steps)
        ),
        schedule=gs.monitor.Every(1),
        per_param=False,
    )
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    steps, observations = [], []
    for _ in range(args.repeats):
        steps.append(
            training_step(model, images, labels, gs.Neumann(5, 0.5), opt, args)["step_seconds"]
        )
        with torch.no_grad():
            x_inj = model.stem(images)
        fp = solve_forward(model, x_inj, args)
        g, _ = cotangent(model, fp.value, labels)
        sync(device)
        start = time.perf_counter()
        monitor.observe(
            model.cell,
            fp.value,
            x_inj,
            cotangent=g,
            training_estimator=gs.Neumann(5, 0.5),
            forward=fp,
        )
        sync(device)
        observations.append(time.perf_counter() - start)
    model.load_state_dict(state)
    step, obs = statistics.median(steps), statistics.median(observations)
    return {
        "monitor_observation_seconds": obs,
        "npg_step_seconds": step,
        "monitor_overhead_every_50_steps": obs / (50 * step),
        "monitor_overhead_every_200_steps": obs / (200 * step),
        "monitor_errors": monitor.errors,
    }


# ---------------------------------------------------------------------------- figure
def _bar_labels(ax, bars, labels: list[str]) -> None:
    for bar, label in zip(bars, labels):
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )


def plot(table: pd.DataFrame, facts: dict, path: Path) -> None:
    """A 2×2 figure: backward time, whole training step, memory, cosine to exact, per estimator."""
    sns.set_theme(style="whitegrid", context="paper")
    names = list(table["estimator"])
    x = list(range(len(names)))
    colors = [("0.55" if n == "exact" else f"C{i}") for i, n in enumerate(names)]
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.0), layout="constrained")
    (a, b), (c, d) = axes

    bars = a.bar(x, table["backward_ms"], color=colors)
    _bar_labels(
        a,
        bars,
        [
            f"{ms:.0f} ms" + ("" if n == "exact" else f"\n{s:.1f}× faster")
            for n, ms, s in zip(names, table["backward_ms"], table["backward_speedup_vs_exact"])
        ],
    )
    a.set_title("Backward alone (gradient estimate)")
    a.set_ylabel("milliseconds (median)")

    forward = table["forward_ms"]
    rest = table["step_ms"] - forward
    b.bar(x, forward, color="0.8", label="stem + forward solve + loss")
    b.bar(x, rest, bottom=forward, color=colors, label="backward + optimizer step")
    for i, (n, ms, s) in enumerate(zip(names, table["step_ms"], table["step_speedup_vs_exact"])):
        b.annotate(
            f"{ms:.0f} ms" + ("" if n == "exact" else f"\n{s:.2f}× faster"),
            (i, ms),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    b.set_title("Whole training step")
    b.set_ylabel("milliseconds (median)")
    b.legend(fontsize=7, loc="lower right", framealpha=0.9)

    peak = table["peak_backward_MiB"].astype(float)
    has_peak = bool(peak.notna().any() and (peak > 0).any())
    width, shift = (0.38, 0.19) if has_peak else (0.6, 0.0)

    def mib(v: float) -> str:
        return f"{v:.0f}" if v >= 100 else f"{v:.3g}"

    if has_peak:
        bars = c.bar(
            [i - shift for i in x],
            peak,
            width,
            color=colors,
            label="peak CUDA memory in backward",
        )
        _bar_labels(c, bars, [mib(v) for v in peak])
        c.set_title("Memory")
    else:
        c.set_title("Memory (peak CUDA memory: n/a on CPU)")
    bars = c.bar(
        [i + shift for i in x],
        table["graph_MiB"],
        width,
        color=colors,
        alpha=0.45,
        hatch="//",
        edgecolor="0.3",
        label="autograd graph kept for the backward",
    )
    _bar_labels(c, bars, [mib(v) for v in table["graph_MiB"]])
    c.set_ylabel("MiB")
    c.legend(fontsize=7, loc="upper right", framealpha=0.9)

    cos = table["cosine_to_exact"].astype(float)
    bars = d.bar(x, cos, color=colors)
    _bar_labels(
        d,
        bars,
        [
            f"{v:.4f}" + ("" if n == "exact" else f"\nrel. error {e:.3f}")
            for n, v, e in zip(names, cos, table["relative_error"])
        ],
    )
    lo = min(0.0, float(cos.min()))
    d.set_ylim(lo, 1.15)
    d.axhline(1.0, color="0.3", lw=0.8, ls="--")
    d.set_title("Agreement with the exact gradient")
    d.set_ylabel("cosine to the exact gradient")

    for ax in axes.flat:
        ax.set_xticks(x, names)
        ax.set_xlabel("")
        top = ax.get_ylim()[1]
        if ax is not d:
            ax.set_ylim(0, top * 1.15)

    bits = []
    if "device" in facts:
        bits.append(str(facts["device"]))
    if "params" in facts:
        bits.append(f"MDEQ-style conv DEQ, {float(facts['params']) / 1e6:.2f}M parameters")
    if "width" in facts:
        bits.append(f"width {facts['width']}")
    if "batch" in facts:
        bits.append(f"batch {facts['batch']}")
    if "rho_J" in facts:
        bits.append(f"ρ(J) = {float(facts['rho_J']):.2f}")
    if "synthetic" in str(facts.get("data", "")):
        bits.append("synthetic CIFAR-10-shaped data")
    fig.suptitle("gpu_scale: " + (", ".join(bits) if bits else path.stem), fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_from(csv_path: Path) -> Path:
    """Redraw the figure of an existing run: ``RUN.csv`` → ``RUN.png`` (title from ``RUN_facts.json``)."""
    table = pd.read_csv(csv_path)
    facts_path = csv_path.with_name(csv_path.stem + "_facts.json")
    facts = json.loads(facts_path.read_text()) if facts_path.exists() else {}
    png = csv_path.with_suffix(".png")
    plot(table, facts, png)
    return png


# ---------------------------------------------------------------------------- report
def report(rows: list[dict], extra: dict, out: Path) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "gpu_scale.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    (out / "gpu_scale_facts.json").write_text(json.dumps(extra, indent=2, default=str))
    plot(pd.DataFrame(rows), extra, out / "gpu_scale.png")
    cols = [
        "estimator",
        "backward_ms",
        "step_ms",
        "vjps",
        "peak_backward_MiB",
        "graph_MiB",
        "cosine_to_exact",
        "relative_error",
        "backward_speedup_vs_exact",
        "step_speedup_vs_exact",
    ]
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols]
        print("| " + " | ".join(cells) + " |")
    for k, v in extra.items():
        print(f"{k}: {v}")
    by = {r["estimator"]: r for r in rows}
    checks = {
        "exact solve converged": bool(by["exact"].get("exact_converged")),
        "phantoms are ascent directions": by["UPG(5,0.5)"]["ascent"] and by["NPG(5,0.5)"]["ascent"],
        "phantom backward faster than exact": min(
            by["UPG(5,0.5)"]["backward_speedup_vs_exact"],
            by["NPG(5,0.5)"]["backward_speedup_vs_exact"],
        )
        > 1,
        "NPG graph memory ≤ UPG's": by["NPG(5,0.5)"]["graph_MiB"] <= by["UPG(5,0.5)"]["graph_MiB"],
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    verdict = all(checks.values())
    print("PASS" if verdict else "FAIL")
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--smoke", action="store_true", help="CPU smoke mode: small widths, batch 4, one repeat"
    )
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--forward-rtol", type=float, default=1e-4)
    parser.add_argument("--forward-steps", type=int, default=60)
    parser.add_argument("--exact-rtol", type=float, default=1e-5)
    parser.add_argument("--exact-steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar", default=None, help="a CIFAR-10 python folder (data_batch_1 …)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--plot-from",
        type=Path,
        default=None,
        metavar="RUN.csv",
        help="only redraw the figure of an existing results CSV (written as RUN.png next to it)",
    )
    args = parser.parse_args(argv)
    if args.plot_from is not None:
        print(f"wrote {plot_from(args.plot_from)}")
        return 0
    if args.smoke:
        args.width, args.batch, args.repeats, args.warmup_steps = 4, 4, 1, 1
        args.forward_steps, args.exact_steps, args.device = 30, 100, "cpu"
    out = args.out or (RESULTS / ("smoke" if args.smoke else args.device))
    rows, extra = measure(args)
    return 0 if report(rows, extra, out) else 1


if __name__ == "__main__":
    sys.exit(main())
