"""Training speed and the demo's wall time.

1. Epoch time of the built-in train stage (a real `hpipe repro` of `uses: train` on a 50,000 x 784
   Hangar commit; the stage prints each epoch's training time) vs a plain PyTorch loop over the
   same data held in memory as tensors, with the same model (784-500-200-10 MLP), optimizer (SGD,
   lr 0.01, momentum 0.9), batch size (32) and torch's default threads. Target: within 1.15x.
   Both also run with the options of issue 12 on (a onecycle schedule stepped every batch and
   gradient clipping; the stage also with early stopping that does not fire), the plain loop
   doing the same. Each of the four runs 3 times, alternating, and the medians over all their
   epochs are compared.
2. The demo pipeline (pipeline.yaml + params.yaml of the repo root), in a fresh folder: first run
   (ingest, 10 epochs of training, evaluation) and no-op run.

Run from the repo root:  .venv/bin/python benchmarks/bench_train.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

from _common import HPIPE, WORK, bench, demo_project, loadavg, machine, make_hangar_repo, ratio, run, table, timed

PLAIN = """
import sys, time, statistics
import torch
from torch import nn
from hangar_pipe.torch import ColumnsDataset
ds = ColumnsDataset(["imgs", "labels"], repo=sys.argv[1], commit=sys.argv[2], cache_dir=False)
x, y = ds.tensors[0].clone(), ds.tensors[1].reshape(-1).clone()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 200), nn.ReLU(), nn.Linear(200, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
epochs, options = int(sys.argv[3]), sys.argv[4:] == ["options"]  # options: onecycle + clipping
batches = -(-len(x) // 32)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=epochs * batches) if options else None
times = []
for epoch in range(epochs):
    t0 = time.perf_counter()
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
    times.append(time.perf_counter() - t0)
print(" ".join(map(str, times)))
"""

PIPELINE = """
stages:
  train:
    uses: train
    with: {images: imgs, labels: labels, val_images: imgs, val_labels: labels}
    deps: [{hangar: [imgs, labels]}]
    params: [train]
    outs: [models/model.pt]
    metrics: [metrics/train.json]
"""

PARAMS = """
train:
  model: {kind: mlp, layers: [784, 500, 200, 10]}
  optimizer: sgd
  lr: 0.01
  momentum: 0.9
  epochs: EPOCHS
  batch_size: 32
  seed: 0
  device: cpu
"""


OPTIONS = """
  scheduler: {kind: onecycle}
  grad_clip: 1.0
  early_stopping: {patience: 100}
"""


def stage_epochs(folder: Path, params: str, epochs: int) -> list[float]:
    """The training-pass seconds of each epoch of a forced `hpipe repro` with these params."""
    (folder / "params.yaml").write_text(params)
    out = run([HPIPE, "repro", "-f"], folder)
    times = [float(s) for s in re.findall(r"epoch \d+/\d+: .*\((\d+\.\d+)s\)", out)]
    assert len(times) == epochs, out
    return times


def epoch_rows(epochs: int, rounds: int = 3) -> list[list[object]]:
    folder = WORK / "hangar-train"
    commit = make_hangar_repo(folder, 50_000, 784)
    (folder / "pipeline.yaml").write_text(PIPELINE)
    params = PARAMS.replace("EPOCHS", str(epochs))
    plain_cmd = [sys.executable, "-c", PLAIN, folder, commit, str(epochs)]
    runs: dict[str, list[float]] = {"stage": [], "plain": [], "stage+": [], "plain+": []}
    for _ in range(rounds):  # alternate them, so drifting machine speed hits all alike
        runs["stage"] += stage_epochs(folder, params, epochs)
        runs["plain"] += [float(s) for s in run(plain_cmd, folder).split()]
        runs["stage+"] += stage_epochs(folder, params.rstrip("\n") + OPTIONS, epochs)
        runs["plain+"] += [float(s) for s in run([*plain_cmd, "options"], folder).split()]
    m = {k: statistics.median(v) for k, v in runs.items()}
    names = {"stage": "train stage (BatchLoader over Hangar columns)",
             "plain": "plain loop over in-memory tensors",
             "stage+": "train stage, onecycle + grad_clip + early_stopping",
             "plain+": "plain loop, onecycle + clip_grad_norm_"}
    return [*([names[k], m[k], ", ".join(f"{t:.2f}" for t in runs[k])] for k in names),
            ["ratio (medians), stage / plain", ratio(m["stage"], m["plain"]), "target <= 1.10x"],
            ["ratio (medians), with the options", ratio(m["stage+"], m["plain+"]), "target <= 1.10x"]]


def demo_rows() -> list[list[object]]:
    folder = demo_project("demo")
    first, _ = timed([HPIPE, "repro"], folder, "3 ran")
    noop = bench([HPIPE, "repro"], folder, reps=7, expect="Everything is up to date.")
    return [["first run (ingest, train 10 epochs, evaluate)", first, ""],
            ["no-op run (median of 7)", noop.median, f"min {noop.min:.3f}"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"## Training\n\nMachine: {machine()}\n")
    print(f"### Epoch time, 50,000 x 784, batch 32 (s; 3 alternating rounds of {args.epochs} epochs each)\n")
    print(table(["loop", "median epoch s", "epochs s"], epoch_rows(args.epochs)))
    print("\n### The demo pipeline, wall time\n")
    t0 = time.perf_counter()
    print(table(["run", "seconds", "note"], demo_rows()))
    print(f"\n(total {time.perf_counter() - t0:.0f} s) Load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
