"""Loading Hangar columns into PyTorch: one epoch over 50,000 x 784 float32 (+ int64 labels), batch 64.

Compared in one process, torch on 1 thread, data in the page cache (the repo is made once under
benchmarks/.work/ with Hangar's default backends: HDF5 `00` for the images, memmap `10` for labels):
- Hangar's `make_torch_dataset` + DataLoader, without and with shuffle (1 epoch each: slow);
- ours: `ColumnsDataset` bulk load (once; later runs load it from the fingerprint-keyed cache),
  then `BatchLoader` epochs, shuffled;
- ours through a plain DataLoader (per-sample `__getitem__`), shuffled;
- the same in-memory batching written by hand (a seeded randperm, then index slices): the fair
  anchor for our epochs, the same operation;
- an in-memory `TensorDataset` + DataLoader, shuffled (what most training scripts do).
- the floor of the bulk load: the same bytes read straight from the backend files (one read per
  file, every checksum verified), alternating with our load, 3 each.
Every epoch figure has its setup next to it. The epochs of ours, by hand and TensorDataset alternate.
Targets: ours >= 10x faster than make_torch_dataset with shuffle, within 1.5x of in-memory batching,
and the first bulk load <= 2x the floor.

Run from the repo root:  .venv/bin/python benchmarks/bench_loader.py [--n 50000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import xxhash
from _common import WORK, loadavg, machine, make_hangar_repo, ratio, summary, table

from hangar_pipe.hangar import compat
from hangar_pipe.torch import BatchLoader, ColumnsDataset


def epoch(batches: Iterable[object]) -> float:
    t0 = time.perf_counter()
    count = 0
    for batch in batches:
        count += len(batch[0])
    return time.perf_counter() - t0


def by_hand(x: torch.Tensor, y: torch.Tensor, seed: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """In-memory batching written by hand: a seeded randperm, then index slices."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(x), 64):
        index = order[i:i + 64]
        yield x[index], y[index]


def floor(folder: Path, commit: str) -> float:
    """Reading the same bytes straight from Hangar's backend files, every sample's checksum
    verified: each file's samples as one read (h5py, numpy), xxh64 of each sample. The records
    that say where the samples are were read before the clock starts."""
    from hangar_pipe.hangar.keys import sort_keys
    from hangar_pipe.hangar.store import HangarStore
    from hangar_pipe.training.bulk_read import locate

    store = HangarStore(folder)
    layouts = [locate(store, commit, name, sort_keys(store.samples(commit, name))) for name in ("imgs", "labels")]
    store.close()
    t0 = time.perf_counter()
    for rows in layouts:
        for g in range(len(rows.files)):
            at = np.flatnonzero(rows.group == g)
            index = rows.index[at]
            lo, hi = int(index.min()), int(index.max()) + 1
            block = np.empty((hi - lo, *rows.shape), dtype=rows.dtype)
            rows._read_into(g, lo, hi, block)
            for i in index - lo:
                xxhash.xxh64_intdigest(block[i])
        rows.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"## Loader: one epoch over {args.n:,} x 784 float32, batch 64\n\nMachine: {machine()}\n")
    folder = WORK / f"hangar-loader-{args.n}"
    commit = make_hangar_repo(folder, args.n, 784)
    DataLoader = torch.utils.data.DataLoader

    hangar = compat.import_hangar()
    t0 = time.perf_counter()
    with compat.quiet():
        co = hangar.Repository(str(folder), exists=True).checkout(commit=commit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = hangar.make_torch_dataset([co.columns["imgs"], co.columns["labels"]])
    setup = time.perf_counter() - t0
    plain = epoch(DataLoader(theirs, batch_size=64, shuffle=False))
    shuffled = epoch(DataLoader(theirs, batch_size=64, shuffle=True))
    co.close()

    loads, floors = [], []
    for _ in range(3):  # alternating with the floor
        floors.append(floor(folder, commit))
        t0 = time.perf_counter()
        ours = ColumnsDataset(["imgs", "labels"], repo=folder, commit=commit, cache_dir=False)
        loads.append(time.perf_counter() - t0)
    load, raw = statistics.median(loads), statistics.median(floors)
    cache = WORK / "loader-cache"
    shutil.rmtree(cache, ignore_errors=True)
    ColumnsDataset(["imgs", "labels"], repo=folder, commit=commit, cache_dir=cache)  # fills it
    t0 = time.perf_counter()
    ColumnsDataset(["imgs", "labels"], repo=folder, commit=commit, cache_dir=cache)
    cached = time.perf_counter() - t0

    x, y = ours.tensors[0].clone(), ours.tensors[1].clone()
    memory = torch.utils.data.TensorDataset(x, y)
    loader = BatchLoader(ours, 64, shuffle=True, seed=0)
    ours_epochs, hand_epochs, memory_epochs = [], [], []
    for e in range(args.epochs):  # alternating
        ours_epochs.append(epoch(loader))
        hand_epochs.append(epoch(by_hand(x, y, e)))
        memory_epochs.append(epoch(DataLoader(memory, batch_size=64, shuffle=True)))
    ours_dl = epoch(DataLoader(ours, batch_size=64, shuffle=True))

    ours_s, hand_s, mem_s = (statistics.median(v) for v in (ours_epochs, hand_epochs, memory_epochs))
    n = args.n
    rows = [
        ["make_torch_dataset + DataLoader, no shuffle", f"{setup:.3f} (checkout)", f"{plain:.3f}",
         f"{setup + plain:.3f}", f"{n / plain:,.0f}"],
        ["make_torch_dataset + DataLoader, shuffle", f"{setup:.3f} (checkout)", f"{shuffled:.3f}",
         f"{setup + shuffled:.3f}", f"{n / shuffled:,.0f}"],
        [f"ours: ColumnsDataset + BatchLoader, shuffle (median of {args.epochs})", f"{load:.3f} (bulk load)",
         f"{ours_s:.3f}", f"{load + ours_s:.3f}", f"{n / ours_s:,.0f}"],
        ["ours, later runs: the bulk load from the fingerprint cache", f"{cached:.3f} (cache)", f"{ours_s:.3f}",
         f"{cached + ours_s:.3f}", f"{n / ours_s:,.0f}"],
        ["ours: ColumnsDataset + DataLoader (per sample), shuffle", f"{load:.3f} (bulk load)", f"{ours_dl:.3f}",
         f"{load + ours_dl:.3f}", f"{n / ours_dl:,.0f}"],
        [f"by hand, in memory: randperm + index slices (median of {args.epochs})", "0 (data given)",
         f"{hand_s:.3f}", f"{hand_s:.3f}", f"{n / hand_s:,.0f}"],
        [f"in memory: TensorDataset + DataLoader, shuffle (median of {args.epochs})", "0 (data given)",
         f"{mem_s:.3f}", f"{mem_s:.3f}", f"{n / mem_s:,.0f}"],
    ]
    print(table(["method", "setup s", "epoch s", "first epoch with setup s", "samples/s (epoch)"], rows))
    print(f"\n- the bulk load (median of 3: {', '.join(f'{t:.2f}' for t in loads)} s) vs reading the same bytes"
          f" straight from the backend files with every checksum verified ({', '.join(f'{t:.2f}' for t in floors)}"
          f" s, alternating): {ratio(load, raw)} (target <= 2x).")
    summary("first bulk load vs reading the backend files (checksums verified)", f"{load / raw:.2f}x", "<= 2x",
            load / raw <= 2)
    print(f"\n- ours vs make_torch_dataset with shuffle: an epoch {shuffled / ours_s:.0f}x faster"
          f" (target >= 10x); the first epoch with each side's setup {(setup + shuffled) / (load + ours_s):.1f}x.")
    print(f"- ours vs the same batching by hand (randperm + index slices): {ratio(ours_s, hand_s)} of its time"
          f" (parity is the most there is to have: it is the same operation).")
    print(f"- ours vs TensorDataset + DataLoader: {ratio(ours_s, mem_s)} of its time (DataLoader fetches and"
          f" collates 64 samples one by one; that is what we save, not faster memory).")
    summary("loader epoch vs make_torch_dataset (shuffle)", f"{shuffled / ours_s:.0f}x faster", ">= 10x faster",
            shuffled / ours_s >= 10)
    summary("loader epoch vs in-memory batching by hand", f"{ours_s / hand_s:.2f}x", "<= 1.5x", ours_s / hand_s <= 1.5)
    print(f"\nLoad average at end: {loadavg()}")


if __name__ == "__main__":
    main()
