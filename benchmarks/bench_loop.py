"""The train stage's loop against a plain PyTorch loop, in one process, epoch by epoch.

bench_train.py times whole `hpipe repro` runs, so a busy machine (other jobs starting and
stopping) swings its epochs by 10x and more. This one isolates the loop: the stage's
`train_epoch` (hangar_pipe.stages.train) and a plain loop run alternately, one epoch each, over
the same in-memory tensors (the first N samples of bench_train's 50,000 x 784 Hangar commit),
same MLP (784-500-200-10), SGD lr 0.01 momentum 0.9, batch 32, one torch thread (so that the
other core's load disturbs less). Both run as they are and with the options of issue 12 (a
onecycle schedule stepped every batch, gradient clipping), the plain loop doing the same.
Target: within 1.10x, for the medians and for the fastest epochs (the least disturbed by
other jobs). The load average is recorded at start and end.

Run from the repo root:  .venv/bin/python benchmarks/bench_loop.py [--rounds 21] [--samples 10000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import WORK, loadavg, machine, make_hangar_repo, ratio, summary, table


def plain_epoch(x: Any, y: Any, options: bool, rounds: int) -> Callable[[], float]:
    """One epoch of the plain loop per call; its seconds."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 200), nn.ReLU(), nn.Linear(200, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = -(-len(x) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=rounds * batches) if options else None
    loss_fn = nn.CrossEntropyLoss()

    def one() -> float:
        started = time.perf_counter()
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            if options:
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
        return time.perf_counter() - started

    return one


def no_progress(n: int, description: str | None = None) -> None:
    pass


def stage_epoch(dataset: Any, options: bool, rounds: int) -> Callable[[], float]:
    """One epoch of the stage's loop (train_epoch over a BatchLoader) per call; its seconds."""
    import torch

    from hangar_pipe.stages.train import Plan, start, train_epoch
    from hangar_pipe.training.hyperparams import parse
    from hangar_pipe.training.loader import BatchLoader
    from hangar_pipe.training.models import build_model
    from hangar_pipe.training.shapes import Where

    section = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 32, "epochs": rounds,
               **({"scheduler": {"kind": "onecycle"}, "grad_clip": 1.0} if options else {})}
    hp = parse(section, Where("params.yaml", ("train",)))
    torch.manual_seed(0)
    loader = BatchLoader(dataset, 32, shuffle=True, seed=0)
    state = start(hp, build_model({"kind": "mlp", "layers": [784, 500, 200, 10]}), len(loader))
    plan = Plan.of(hp)
    epoch = [0]

    def one() -> float:
        epoch[0] += 1
        started = time.perf_counter()
        train_epoch(state, plan, epoch[0], loader, no_progress)
        return time.perf_counter() - started

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    import torch

    from hangar_pipe.training.loader import ColumnsDataset

    torch.set_num_threads(1)
    folder = WORK / "hangar-train"
    commit = make_hangar_repo(folder, 50_000, 784)
    n = args.samples  # the first n samples (Hangar's index_range selection)
    dataset = ColumnsDataset(["imgs", "labels"], repo=folder, commit=commit, index_range=slice(0, n), cache_dir=False)
    x, y = dataset.tensors[0], dataset.tensors[1].reshape(-1)
    print(f"## The training loop, in one process\n\nMachine: {machine()}\n")
    loops = {"plain loop": plain_epoch(x, y, False, args.rounds),
             "train stage loop": stage_epoch(dataset, False, args.rounds),
             "plain loop, onecycle + clip_grad_norm_": plain_epoch(x, y, True, args.rounds),
             "train stage loop, onecycle + grad_clip": stage_epoch(dataset, True, args.rounds)}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):  # alternate, one epoch each, so load swings hit all alike
        for name, one in loops.items():
            times[name].append(one())
    m = {name: statistics.median(t) for name, t in times.items()}
    rows: list[list[object]] = [[name, m[name], f"min {min(t):.3f}, max {max(t):.3f}"] for name, t in times.items()]
    low = {name: min(t) for name, t in times.items()}  # the epoch least disturbed by other jobs
    for label, stage, plain in (("", "train stage loop", "plain loop"),
                                (", with the options", "train stage loop, onecycle + grad_clip",
                                 "plain loop, onecycle + clip_grad_norm_")):
        rows.append([f"ratio{label}: medians (fastest epochs)", ratio(m[stage], m[plain]),
                     f"{ratio(low[stage], low[plain])}; target <= 1.10x"])
    summary("train stage loop vs plain loop (medians)", f"{m['train stage loop'] / m['plain loop']:.2f}x",
            "<= 1.10x", m["train stage loop"] / m["plain loop"] <= 1.10)
    print(f"### {n:,} x 784, batch 32, one thread, {args.rounds} alternating epochs each (s)\n")
    print(table(["loop", "median epoch s", "spread"], rows))
    print(f"\nLoad average at end: {loadavg()}")


if __name__ == "__main__":
    main()
