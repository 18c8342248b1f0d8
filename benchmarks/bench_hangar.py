"""Hangar data as dependencies: column fingerprints, no-op runs over Hangar deps vs DVC, ingest speed.

1. Column fingerprint time vs commit size: commits of 10k, 100k and 200k samples (two columns of
   that many samples each, so the commit holds 2N records). Warm: one process reusing its open
   lmdb environments (first look at a commit, and again with the records cached). Cold: a fresh
   `python -c` per fingerprint, total wall time and the fingerprint call alone. Target: <= 50 ms
   per column at 100k samples.
2. No-op `hpipe repro` of a 2-stage pipeline reading two Hangar columns of a 50,000 x 784 float32
   commit, vs the same pipeline in DVC where the data is a folder of 50,000 .npy files.
3. Ingest throughput: the built-in ingest stage (`hpipe repro` of `uses: ingest` on an .npz of
   50,000 x 784) vs plain Hangar writes of the same arrays in one writer checkout (`with col:`).

Run from the repo root:  .venv/bin/python benchmarks/bench_hangar.py [--no-dvc] [--skip-ingest]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from _common import (
    HPIPE,
    WORK,
    bench_interleaved,
    dvc_version,
    ensure_dvc,
    init_dvc,
    loadavg,
    machine,
    make_hangar_repo,
    ratio,
    run,
    table,
    timed,
)

SIZES = (10_000, 50_000, 100_000, 200_000)
BIG = 50_000


FINGERPRINT = """
import sys, time
t0 = time.perf_counter()
from hangar_pipe.hangar.store import HangarStore
t1 = time.perf_counter()
store = HangarStore(__import__('pathlib').Path(sys.argv[1]))
state = store.column(sys.argv[2], 'labels')
t2 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {state.samples}")
"""


def fingerprint_rows() -> list[list[object]]:
    from hangar_pipe.hangar.store import HangarStore

    rows = []
    for n in SIZES:
        folder = WORK / f"hangar-fp-{n}"
        commit = make_hangar_repo(folder, n, 4)
        store = HangarStore(folder)
        first, cached = [], []
        for _ in range(5):
            store._flat.clear()  # a commit seen for the first time in this process
            t0 = time.perf_counter()
            store.column(commit, "labels")
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.column(commit, "imgs")
            cached.append(time.perf_counter() - t0)
        store.close()
        cold_total, cold_call = [], []
        for _ in range(5):
            wall, out = timed([sys.executable, "-c", FINGERPRINT, folder, commit], WORK)
            imp, call, samples = out.split()
            assert int(samples) == n
            cold_total.append(wall)
            cold_call.append(float(call))
        rows.append([f"{n:,}", f"{2 * n:,}", 1000 * min(first), 1000 * min(cached),
                     1000 * min(cold_call), 1000 * min(cold_total)])
    return rows


def noop_rows(with_dvc: bool) -> tuple[list[list[object]], str]:
    base = WORK / "hangar-noop"
    commit = make_hangar_repo(base / "hpipe", BIG, 784)
    hp = base / "hpipe"
    (hp / "pipeline.yaml").write_text(
        "stages:\n"
        "  stats:\n"
        "    cmd: echo \"$HPIPE_DATA_COMMIT\" > stats.txt\n"
        "    deps:\n      - hangar: [imgs, labels]\n"
        "    outs: [stats.txt]\n"
        "  report:\n"
        "    cmd: cp stats.txt report.txt\n"
        "    deps: [stats.txt]\n"
        "    outs: [report.txt]\n")
    run([HPIPE, "repro"], hp)
    jobs = {"hpipe repro": ([HPIPE, "repro"], hp, "Everything is up to date."),
            "hpipe status": ([HPIPE, "status"], hp, "Everything is up to date.")}
    version = ""
    if with_dvc:
        dvc = ensure_dvc()
        version = dvc_version(dvc)
        dv = base / "dvc"
        if not (dv / "data" / "labels").exists():
            shutil.rmtree(dv, ignore_errors=True)
            (dv / "data" / "imgs").mkdir(parents=True)
            (dv / "data" / "labels").mkdir(parents=True)
            rng = np.random.default_rng(0)
            x = rng.random((BIG, 784), dtype=np.float32)
            y = rng.integers(0, 10, (BIG, 1)).astype(np.int64)
            for i in range(BIG):
                np.save(dv / "data" / "imgs" / f"{i}.npy", x[i])
                np.save(dv / "data" / "labels" / f"{i}.npy", y[i])
            init_dvc(dvc, dv)
            (dv / "dvc.yaml").write_text(
                "stages:\n"
                "  stats:\n"
                "    cmd: ls data/labels | wc -l > stats.txt\n"
                "    deps: [data/imgs, data/labels]\n"
                "    outs: [stats.txt]\n"
                "  report:\n"
                "    cmd: cp stats.txt report.txt\n"
                "    deps: [stats.txt]\n"
                "    outs: [report.txt]\n")
            t, _ = timed([dvc, "repro"], dv)
            print(f"dvc first run (hashes 100,000 files): {t:.1f} s", file=sys.stderr)
        jobs["dvc repro"] = ([dvc, "repro"], dv, "up to date")
        jobs["dvc status"] = ([dvc, "status"], dv, "up to date")
    timings = bench_interleaved(jobs, reps=5)
    rows = [[name, t.median, t.min] for name, t in timings.items()]
    if with_dvc:
        rows.append(["ratio repro (median)", ratio(timings["hpipe repro"].median,
                                                   timings["dvc repro"].median), ""])
        rows.append(["ratio status (median)", ratio(timings["hpipe status"].median,
                                                    timings["dvc status"].median), ""])
    assert commit
    return rows, version


PLAIN_WRITES = """
import sys, time
import numpy as np
from hangar_pipe.hangar import compat
hangar = compat.import_hangar()
data = np.load(sys.argv[2])
x = (data["x"].reshape(len(data["x"]), -1) / 255.0).astype(np.float32)
y = data["y"].astype(np.int64).reshape(-1, 1)
t0 = time.perf_counter()
with compat.quiet():
    repo = hangar.Repository(sys.argv[1], exists=False)
    repo.init(user_name="bench", user_email="bench@example.com")
    co = repo.checkout(write=True)
imgs = co.add_ndarray_column("mnist_training_images", shape=(784,), dtype=np.float32)
labels = co.add_ndarray_column("mnist_training_labels", shape=(1,), dtype=np.int64)
with imgs, labels:
    for i in range(len(x)):
        imgs[i] = x[i]
        labels[i] = y[i]
co.commit("plain")
co.close()
print(time.perf_counter() - t0)
"""


def ingest_rows() -> list[list[object]]:
    base = WORK / "hangar-ingest"
    shutil.rmtree(base, ignore_errors=True)
    (base / "ours").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(base / "raw.npz", x=rng.integers(0, 256, (BIG, 28, 28), dtype=np.uint8),
             y=rng.integers(0, 10, BIG).astype(np.uint8))
    shutil.copy(base / "raw.npz", base / "ours" / "raw.npz")
    (base / "ours" / "pipeline.yaml").write_text(
        "stages:\n  ingest:\n    uses: ingest\n"
        "    with: {source: raw.npz, splits: {training: 1.0}}\n"
        "    deps: [raw.npz]\n"
        "    outs: [{hangar: [mnist_training_images, mnist_training_labels]}]\n")
    ours, output = timed([HPIPE, "repro"], base / "ours", "committed")
    writes = float(re.search(r"wrote \d+ samples in (\d+\.\d+)s", output).group(1))
    (base / "plain").mkdir()
    out = subprocess.run([sys.executable, "-c", PLAIN_WRITES, str(base / "plain"), str(base / "raw.npz")],
                         capture_output=True, text=True, check=True).stdout
    plain = float(out.split()[-1])
    return [["hpipe ingest stage: whole `hpipe repro` (start-up, reading the .npz, writes, commit)",
             ours, f"{BIG / ours:,.0f}"],
            ["hpipe ingest stage: its writes alone (as it prints them)", writes, f"{BIG / writes:,.0f}"],
            ["plain Hangar writes in one `with col:` block, plus the commit", plain,
             f"{BIG / plain:,.0f}"],
            ["ratio, whole stage / plain", ratio(ours, plain), ""]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-dvc", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print("## Hangar dependencies\n\nMachine: " + machine() + "\n")
    print("### Column fingerprint vs commit size (ms, best of 5)\n")
    print("Each commit holds two columns (`imgs`, `labels`) of N samples; the fingerprinted column is\n"
          "`labels` (first look) then `imgs` (records cached). A \"100k-sample commit\" is the\n"
          "50,000-per-column row (100,000 samples, as in the notes) or the 100,000 row (per column).\n")
    print(table(["samples per column", "records in commit", "warm: first look at commit",
                 "warm: records cached", "cold process: fingerprint call", "cold process: total wall"],
                fingerprint_rows()))
    rows, version = noop_rows(not args.no_dvc)
    print(f"\n### No-op run over a {BIG:,} x 784 commit (s, 5 runs interleaved){'; ' + version if version else ''}\n")
    print(table(["command", "median s", "min s"], rows))
    if not args.skip_ingest:
        print(f"\n### Ingest of {BIG:,} x 784 samples\n")
        print(table(["writer", "seconds", "samples/s"], ingest_rows()))
    print(f"\nLoad average at end: {loadavg()}")


if __name__ == "__main__":
    main()
