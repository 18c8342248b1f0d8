"""Streaming columns bigger than the memory budget: an epoch over a column 3x the budget.

The data: N x 784 float32 images + int64 labels (N = 120,000: 377 MB), in a Hangar repo made once
under benchmarks/.work/ per backend (HDF5 `00`, Hangar's default for these; memmap `10`). The
budget is a third of the data. Each variant runs in a fresh process (its peak RSS is its own),
torch on one thread, batch 64, shuffled, two epochs; the variants alternate, `--rounds` times:

- memory: `ColumnsDataset` loads both columns whole (`memory_budget` above the data), then
  `BatchLoader` epochs with the full shuffle. Setup = the bulk load (checksums verified).
- streamed, warm: `memory_budget` = a third of the data: `BatchLoader` reads windows of chunks
  (chunk shuffle), every sample checksum-verified on every read; the files in the page cache.
- streamed, cold: the same after the backend files were evicted from the page cache
  (posix_fadvise DONTNEED on each): every window read from the disk, as data bigger than the
  machine's memory is.
- Hangar's `make_torch_dataset` + DataLoader(shuffle=True): one epoch, in the first round only
  (it reads one sample at a time: slow).

Run from the repo root:  .venv/bin/python benchmarks/bench_stream.py [--n 120000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from _common import WORK, loadavg, machine, make_hangar_repo, summary, table

DIM = 784
ROW = DIM * 4 + 8


def evict(folder: Path) -> None:
    """Drop the repo's backend files from the page cache (clean pages: no root needed)."""
    for path in (folder / ".hangar" / "data").rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child(variant: str, folder: Path, commit: str, budget: int, epochs: int) -> dict[str, object]:
    """One variant in this process: setup seconds, epoch seconds, peak RSS (MiB)."""
    import torch

    from hangar_pipe.torch import BatchLoader, ColumnsDataset

    torch.set_num_threads(1)
    if variant == "cold":
        evict(folder)
    t0 = time.perf_counter()
    if variant == "baseline":  # the interpreter with torch, h5py and hangar_pipe.torch imported
        import h5py  # noqa: F401
        import hdf5plugin  # noqa: F401

        batches: Iterable[object] = []
    elif variant == "hangar":
        from hangar_pipe.hangar import compat

        hangar = compat.import_hangar()
        with compat.quiet():
            co = hangar.Repository(str(folder), exists=True).checkout(commit=commit)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = hangar.make_torch_dataset([co.columns["imgs"], co.columns["labels"]])
        batches = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
    else:
        budget = budget if variant != "memory" else 64 * budget
        ours = ColumnsDataset(["imgs", "labels"], repo=folder, commit=commit, cache_dir=False,
                              memory_budget=budget)
        assert ours.streamed == (variant != "memory")
        batches = BatchLoader(ours, 64, shuffle=True, seed=0)
    setup = time.perf_counter() - t0
    times = []
    seen = 0
    for _ in range(epochs):
        if variant == "cold":
            evict(folder)
        t0 = time.perf_counter()
        seen = 0
        for batch in batches:
            seen += len(batch[0])
        times.append(time.perf_counter() - t0)
    status = Path("/proc/self/status").read_text()
    peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    return {"setup": setup, "epochs": times, "peak_mib": peak, "samples": seen}


def run_child(variant: str, folder: Path, commit: str, budget: int, epochs: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--folder", str(folder),
                          "--commit", commit, "--budget", str(budget), "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(backend: str, n: int, rounds: int) -> list[list[object]]:
    folder = WORK / f"hangar-stream-{backend}-{n}"
    commit = make_hangar_repo(folder, n, DIM, backend=backend)
    budget = n * ROW // 3
    results: dict[str, list[dict[str, object]]] = {"memory": [], "warm": [], "cold": [], "hangar": []}
    baseline = run_child("baseline", folder, commit, budget, 0)["peak_mib"]
    for r in range(rounds):
        for variant in ("memory", "warm", "cold") + (("hangar",) if r == 0 else ()):
            results[variant].append(run_child(variant, folder, commit, budget, 1 if variant == "hangar" else 2))
            print(f"  {backend} round {r + 1} {variant}: {results[variant][-1]}", file=sys.stderr)
    names = {"memory": "ColumnsDataset in memory (full shuffle)",
             "warm": f"streamed, budget {budget / 2**20:.0f} MiB, page cache warm (chunk shuffle)",
             "cold": f"streamed, budget {budget / 2**20:.0f} MiB, page cache evicted (chunk shuffle)",
             "hangar": "Hangar make_torch_dataset + DataLoader(shuffle=True)"}
    memory_epoch = statistics.median(float(e) for r in results["memory"] for e in r["epochs"])  # type: ignore[attr-defined]
    cold = statistics.median(float(e) for r in results["cold"] for e in r["epochs"])  # type: ignore[attr-defined]
    summary(f"streamed epoch (3x the budget, backend {backend}, cold) vs in memory", f"{cold / memory_epoch:.1f}x",
            "none (reported)", None)
    summary(f"streamed epoch (backend {backend}, cold) vs make_torch_dataset",
            f"{float(results['hangar'][0]['epochs'][0]) / cold:.0f}x faster", "none (reported)", None)  # type: ignore[index]
    rows = []
    for variant, runs in results.items():
        setup = statistics.median(float(r["setup"]) for r in runs)  # type: ignore[arg-type]
        epochs = [float(e) for r in runs for e in r["epochs"]]  # type: ignore[attr-defined]
        epoch = statistics.median(epochs)
        peak = max(float(r["peak_mib"]) for r in runs)  # type: ignore[arg-type]
        rows.append([f"`{backend}` {names[variant]}", f"{setup:.2f}", f"{epoch:.2f}",
                     ", ".join(f"{e:.2f}" for e in epochs), f"{n / epoch:,.0f}", f"{epoch / memory_epoch:.1f}x",
                     f"{peak:,.0f} (+{peak - float(baseline):,.0f})"])  # type: ignore[arg-type]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=120_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="00,10")
    parser.add_argument("--child")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--commit")
    parser.add_argument("--budget", type=int)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.commit, args.budget, args.epochs)))
        return
    print(f"## Streaming: an epoch over {args.n:,} x {DIM} float32 + labels ({args.n * ROW / 2**20:.0f} MiB),"
          f" 3x the memory budget\n\nMachine: {machine()}\n")
    rows = [row for backend in args.backends.split(",") for row in measure(backend, args.n, args.rounds)]
    print(table(["variant", "setup s", "epoch s (median)", "epochs", "samples/s", "vs in memory",
                 "peak RSS MiB (+ over the imports alone)"], rows))
    print(f"\nLoad average at end: {loadavg()}")


if __name__ == "__main__":
    main()
