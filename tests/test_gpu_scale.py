"""The GPU-scale script's model, loader and CPU smoke mode."""

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

import gpu_scale
from cases import global_seed

import gradscope as gs


def test_cifar_loader_reads_a_python_batch_folder(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(12, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, size=12))
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f)
    x, y = gpu_scale.load_cifar10(tmp_path, 8)
    assert x.shape == (8, 3, 32, 32) and y.tolist() == labels[:8]
    # channel 0 of image 0, pixel (0, 0), normalised with the CIFAR-10 statistics
    expected = (data[0, 0] / 255.0 - gpu_scale.CIFAR_MEAN[0]) / gpu_scale.CIFAR_STD[0]
    assert abs(float(x[0, 0, 0, 0]) - expected) < 1e-6


def test_multiscale_cell_is_a_well_posed_per_sample_deq():
    with global_seed(0):  # the script's model takes no generator
        model = gpu_scale.MDEQ(width=4).double()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 32, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        x = model.stem(images)
    assert x.shape == (2, model.cell.state_size())
    fp = gs.find_fixed_point(model.cell, x, h0=torch.zeros_like(x), rtol=1e-10, max_steps=300)
    assert fp.converged
    problem = gs.FixedPointProblem.from_module(model.cell, fp.value, x)
    assert problem.samples_independent  # group norm is per sample
    g = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    exact = gs.estimate_gradient(problem, g, gs.Exact(gs.solvers.GMRES(rtol=1e-8)))
    assert exact.solution.converged


@pytest.mark.slow
def test_smoke_mode_end_to_end(tmp_path):
    assert gpu_scale.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "gpu_scale.csv").exists() and (tmp_path / "gpu_scale_facts.json").exists()
    png = tmp_path / "gpu_scale.png"
    assert png.exists() and png.stat().st_size > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --plot-from redraws the figure of an existing run, next to its CSV
    png.unlink()
    assert gpu_scale.main(["--plot-from", str(tmp_path / "gpu_scale.csv")]) == 0
    assert png.exists() and png.stat().st_size > 0
