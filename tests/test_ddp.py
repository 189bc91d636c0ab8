"""GradientMonitor under DistributedDataParallel: two CPU processes, gloo backend."""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from cases import global_seed
from torch import nn

import gradscope as gs

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable"),
    pytest.mark.slow,  # two spawned processes
]


def _worker(rank: int, world: int, folder: str) -> None:
    # A file store rather than TCP: no rank hosts a server that the other still needs while it
    # shuts down, and no port to race for.
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method="file://" + os.path.join(folder, "store"),
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    with global_seed(0):  # same initial model on every rank (DigitsDEQ takes no generator)
        model = gs.demo.DigitsDEQ(width=12, estimator=gs.Neumann(4, 0.5))
    monitor = gs.GradientMonitor(
        estimators=[gs.OneStep()],
        schedule=gs.monitor.Every(2),
        sinks=[gs.monitor.CSVSink(os.path.join(folder, f"records_rank{rank}.csv"))],
    )
    monitor.attach(model.layer, name="deq")
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(100 + rank)  # a different shard per rank
    for _ in range(4):
        x = torch.randn(16, 64, generator=generator)
        y = torch.randint(0, 10, (16,), generator=generator)
        loss = nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    monitor.close()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    result = {
        "observations": monitor.observations,
        "errors": monitor.errors,
        "steps": sorted({r["step"] for r in monitor.records}),
        "cosine": [
            r["value"]
            for r in monitor.records
            if r["metric"] == "cosine" and r["param"] == "all" and r["estimator"] == "OneStep"
        ],
        "param_sum": float(flat.double().sum()),
        "param_norm": float(flat.double().norm()),
    }
    with open(os.path.join(folder, f"result{rank}.json"), "w") as f:
        json.dump(result, f)
    # Leaving: on the CI machine a rank once aborted at teardown, after the work ("terminate
    # called without an active exception": gloo's C++ threads). So no rank closes its sockets
    # before both have passed the barrier (a file rendezvous, no gloo traffic), and os._exit
    # skips the C++ teardown altogether; the OS closes the sockets.
    dist.barrier()
    _rendezvous(folder, rank, world)
    os._exit(0)


def _rendezvous(folder: str, rank: int, world: int, timeout: float = 60.0) -> None:
    """Wait, through files, until every rank has reached this point."""
    open(os.path.join(folder, f"leaving{rank}"), "w").close()
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(os.path.join(folder, f"leaving{r}")) for r in range(world)):
        if time.monotonic() > deadline:
            os._exit(3)
        time.sleep(0.01)


def test_monitor_under_ddp_two_processes(tmp_path):
    context = mp.start_processes(
        _worker, args=(2, str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 120 s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert result["observations"] == 2 and result["errors"] == 0
        assert result["steps"] == [0, 2]
        assert all(0.0 < c <= 1.0 for c in result["cosine"])
    # DDP kept the replicas identical: the monitor did not disturb the gradient all-reduce.
    assert results[0]["param_sum"] == results[1]["param_sum"]
    assert results[0]["param_norm"] == results[1]["param_norm"]
    # Local shards: each rank measured its own batch.
    assert results[0]["cosine"] != results[1]["cosine"]
    # Only rank 0 writes.
    assert (tmp_path / "records_rank0.csv").exists()
    assert not (tmp_path / "records_rank1.csv").exists()
