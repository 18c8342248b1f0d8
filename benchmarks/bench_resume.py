"""Resume and distributed training on the demo: what the per-epoch state save costs, and what
2 gloo processes cost against 1.

1. Resume overhead. The demo's train stage (784-500-200-10 MLP, SGD with momentum, MNIST 5k) run
   with `hpipe repro -f train` prints each epoch's training time; in between, a separate process
   times `Checkpointer.save` of the same model and optimizer state (momentum buffers filled) into
   benchmarks/.work, 10 saves each round: what the training loop waits for (the state serialized
   and handed to the writer thread), and until the file is on disk (fsync and rename included,
   on that thread while the next epoch runs). Rounds alternate; the median save over the
   median epoch is the overhead. The demo's epoch with one thread is the stricter anchor (the
   DDP table below has it). Target: <= 5%.
2. DDP. The same stage with `distributed: {nproc_per_node: 2}` (gloo, one thread per process) vs
   one process with torch's default threads and with one thread: the command's wall time, the
   median epoch, and the rest (wall minus the epochs: imports, data, validation, the launch).

Run from the repo root:  .venv/bin/python benchmarks/bench_resume.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

from _common import ENV, HPIPE, WORK, demo_project, loadavg, machine, ratio, run, summary, table

SAVES = """
import statistics, sys, time
from pathlib import Path
import torch
from hangar_pipe.stages.train import build_model
from hangar_pipe.training.resume import Checkpointer
torch.manual_seed(0)
model = build_model({"kind": "mlp", "layers": [784, 500, 200, 10]})
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
model(torch.zeros(32, 784)).sum().backward()
optimizer.step()  # momentum buffers, as after an epoch
log = {k: [0.5] * 10 for k in ("train_loss", "val_loss", "val_accuracy")}
ckpt = Checkpointer(Path(sys.argv[1]), {"params": {"lr": 0.01}})
saves, writes = [], []
for epoch in range(1, 11):
    t0 = time.perf_counter()
    ckpt.save(epoch, model, optimizer, None, None, log)  # what the training loop waits for
    t1 = time.perf_counter()
    ckpt.wait()  # the write, on its own thread while the next epoch runs
    saves.append(t1 - t0)
    writes.append(time.perf_counter() - t0)
print(" ".join(map(str, saves)), " ".join(map(str, writes)), (Path(sys.argv[1]) / "train-state.pt").stat().st_size)
"""

EPOCH = re.compile(r"epoch \d+/\d+: .*\((\d+\.\d+)s\)")


def stage_run(folder: Path, threads: str | None = None) -> tuple[float, list[float]]:
    """`hpipe repro -f train`: (wall seconds, each epoch's training seconds)."""
    env = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    t0 = time.perf_counter()
    import subprocess

    proc = subprocess.run([str(HPIPE), "repro", "-f", "train"], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stdout + proc.stderr)
    return wall, [float(s) for s in EPOCH.findall(proc.stdout)]


def resume_rows(rounds: int) -> list[list[object]]:
    folder = demo_project("resume-demo")
    run([HPIPE, "repro"], folder, "3 ran")
    epochs: list[float] = []
    one: list[float] = []
    saves: list[float] = []
    writes: list[float] = []
    size = 0
    for _ in range(rounds):
        epochs += stage_run(folder)[1]
        one += stage_run(folder, "1")[1]
        out = run([sys.executable, "-c", SAVES, WORK / "resume-state"], folder).split()
        saves += [float(s) for s in out[:10]]
        writes += [float(s) for s in out[10:20]]
        size = int(out[-1])
    e, e1 = statistics.median(epochs), statistics.median(one)
    s, w = statistics.median(saves), statistics.median(writes)
    summary("resume: state save / one-thread demo epoch", f"{100 * s / e1:.1f}%", "<= 5%", s / e1 <= 0.05)
    return [["demo epoch (training pass), torch's default threads", e, ", ".join(f"{t:.2f}" for t in epochs)],
            ["demo epoch (training pass), 1 thread", e1, ", ".join(f"{t:.2f}" for t in one)],
            [f"save: what the loop waits for ({size / 1e6:.1f} MB serialized)", s,
             ", ".join(f"{t * 1000:.0f}ms" for t in saves)],
            ["save: until on disk (write, fsync, rename; on its own thread)", w,
             ", ".join(f"{t * 1000:.0f}ms" for t in writes)],
            ["save / epoch (default threads; 1 thread)", f"{100 * s / e:.1f}%; {100 * s / e1:.1f}%",
             f"target <= 5%; on disk / 1-thread epoch {100 * w / e1:.1f}%"]]


def ddp_rows(rounds: int) -> list[list[object]]:
    one = demo_project("ddp-one")
    two = demo_project("ddp-two")
    params = (two / "params.yaml").read_text()
    (two / "params.yaml").write_text(params + "  distributed: {nproc_per_node: 2}\n")
    run([HPIPE, "repro", "ingest"], one)
    run([HPIPE, "repro", "ingest"], two)
    results: dict[str, list[tuple[float, list[float]]]] = {"default": [], "one": [], "two": []}
    for _ in range(rounds):  # alternating
        results["default"].append(stage_run(one))
        results["one"].append(stage_run(one, "1"))
        results["two"].append(stage_run(two))
    rows: list[list[object]] = []
    names = {"default": "1 process, torch's default threads", "one": "1 process, 1 thread",
             "two": "2 processes (gloo DDP, torchrun), 1 thread each"}
    for key, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        epoch = statistics.median(t for _, ts in runs for t in ts)
        rest = statistics.median(w - sum(ts) for w, ts in runs)
        rows.append([names[key], wall, epoch, rest, ", ".join(f"{w:.1f}" for w, _ in runs)])
    rows.append(["2 processes / 1 process, 1 thread (wall)",
                 ratio(rows[2][1], rows[1][1]), ratio(rows[2][2], rows[1][2]), f"+{rows[2][3] - rows[1][3]:.1f} s", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)
    print(f"## Resume and DDP on the demo\n\nMachine: {machine()}\n")
    print(f"### Per-epoch state save vs the demo's epoch ({args.rounds} alternating rounds; seconds)\n")
    print(table(["what", "median s", "each"], resume_rows(args.rounds)))
    print(f"\nLoad average: {loadavg()}\n")
    print(f"### 2 gloo processes vs 1, demo train stage, 10 epochs ({args.rounds} alternating rounds)\n")
    print(table(["run", "median wall s", "median epoch s", "median rest s", "walls"], ddp_rows(args.rounds)))
    print(f"\nLoad average at end: {loadavg()}")


if __name__ == "__main__":
    main()
