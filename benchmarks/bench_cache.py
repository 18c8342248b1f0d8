"""The run cache: restoring results instead of rerunning them, vs DVC's run-cache; cache throughput.

1. The 3-stage pipeline of bench_noop.py in hpipe and DVC: run with `train.lr` = A, then B, then
   switch back to A: both tools restore from their run cache. Timed: the switch back (restore)
   and a forced rerun of the same stages (`--no-run-cache -f` / `dvc repro -f`).
2. The demo (MNIST 5k, 10 epochs): lr A, then B, then back to A: the restore of train + evaluate
   vs their rerun; and the same train and evaluate stages as DVC cmd stages (the built-in stages
   called through `python -m hangar_pipe.core.call`, on a copy of the Hangar data, `.hangar/ref.lmdb`
   as their data dep), restored from DVC's run-cache.
3. Cache add and restore of a 1 GiB output file: `ObjectStore.save` and `ObjectStore.restore`
   timed in-process (page cache warm), in GB/s.

Run from the repo root:  .venv/bin/python benchmarks/bench_cache.py [--no-dvc] [--skip-demo]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    ENV,
    HPIPE,
    WORK,
    demo_project,
    ensure_dvc,
    init_dvc,
    loadavg,
    machine,
    ratio,
    run,
    table,
    timed,
    twin_projects,
)
from bench_noop import FILES, STAGES

from hangar_pipe.core.fingerprint import fingerprint_path
from hangar_pipe.core.objects import ObjectStore
from hangar_pipe.hangar.store import HangarStore


def set_lr(folder: Path, old: str, new: str) -> None:
    params = folder / "params.yaml"
    params.write_text(params.read_text().replace(f"lr: {old}", f"lr: {new}"))


def small_rows(with_dvc: bool) -> list[list[object]]:
    dvc = ensure_dvc() if with_dvc else None
    hp, dv = twin_projects("cache-small", STAGES, FILES, dvc)
    rows = []
    tools = [("hpipe", hp, [HPIPE, "repro"], [HPIPE, "repro", "-f", "--no-run-cache"], "restored")]
    if dvc is not None and dv is not None:
        tools.append(("dvc", dv, [dvc, "repro"], [dvc, "repro", "-f"], "is cached"))
    for name, folder, repro, force, word in tools:
        run(repro, folder)
        set_lr(folder, "0.01", "0.02")
        run(repro, folder)
        set_lr(folder, "0.02", "0.01")
        restore, _ = timed(repro, folder, word)
        rerun, _ = timed(force, folder)
        rows.append([name, restore, rerun])
    if len(rows) == 2:
        rows.append(["hpipe / dvc", ratio(rows[0][1], rows[1][1]), ratio(rows[0][2], rows[1][2])])
    return rows


DVC_DEMO = """
stages:
  train:
    cmd: PY -m hangar_pipe.core.call hangar_pipe.stages.train:run '{}'
    deps: [.hangar/ref.lmdb]
    params: [train]
    outs: [models/model.pt]
    metrics: [metrics/train.json]
  evaluate:
    cmd: PY -m hangar_pipe.core.call hangar_pipe.stages.evaluate:run '{}'
    deps: [models/model.pt, .hangar/ref.lmdb]
    metrics: [metrics/eval.json]
"""


def demo_rows(dvc: Path | None) -> list[list[object]]:
    folder = demo_project("cache-demo")
    run([HPIPE, "repro"], folder)
    rows: list[list[object]] = []
    if dvc is not None:  # the same train and evaluate stages, as DVC cmd stages on a copy of the data
        twin = WORK / "cache-demo-dvc"
        shutil.rmtree(twin, ignore_errors=True)
        twin.mkdir(parents=True)
        shutil.copytree(folder / ".hangar", twin / ".hangar")
        shutil.copy(folder / "params.yaml", twin / "params.yaml")
        (twin / "dvc.yaml").write_text(DVC_DEMO.replace("PY", sys.executable))
        init_dvc(dvc, twin)
        commit = HangarStore(twin).branches()["master"]
        env = {**ENV, "HPIPE_DATA_REPO": str(twin), "HPIPE_DATA_COMMIT": commit,
               "HPIPE_ROOT": str(twin)}

        def dvc_repro(expect: str) -> float:
            t0 = time.perf_counter()
            proc = subprocess.run([str(dvc), "repro"], cwd=twin, env=env, capture_output=True, text=True)
            assert proc.returncode == 0 and expect in proc.stdout + proc.stderr, proc.stdout + proc.stderr
            return time.perf_counter() - t0

        dvc_repro("Running stage 'train'")
        set_lr(twin, "0.01", "0.02")
        dvc_rerun = dvc_repro("Running stage 'train'")
        set_lr(twin, "0.02", "0.01")
        dvc_restore = dvc_repro("is cached - skipping run")
    set_lr(folder, "0.01", "0.02")
    rerun, _ = timed([HPIPE, "repro"], folder, "2 ran")
    set_lr(folder, "0.02", "0.01")
    restore, _ = timed([HPIPE, "repro"], folder, "2 restored")
    rows += [["hpipe: train + evaluate restored (lr switched back)", restore],
             ["hpipe: train + evaluate rerun (lr changed)", rerun],
             ["hpipe: restore / rerun", ratio(restore, rerun)]]
    if dvc is not None:
        rows += [["dvc: train + evaluate restored from its run-cache (lr switched back)", dvc_restore],
                 ["dvc: train + evaluate rerun (lr changed)", dvc_rerun],
                 ["restore, hpipe / dvc", ratio(restore, dvc_restore)]]
    return rows


def throughput_rows() -> list[list[object]]:
    big = WORK / "hash-1024mib.bin"
    if not big.exists() or big.stat().st_size != 1 << 30:
        with open(big, "wb") as fh:
            for i in range(256):
                fh.write(bytes([i % 251]) * (4 << 20))
    rec = {"path": "big.bin", **fingerprint_path(str(big)).record()}
    rows = []
    for attempt in range(2):
        store_dir = Path(tempfile.mkdtemp(dir=WORK, prefix="objects-"))
        store = ObjectStore(store_dir)
        t0 = time.perf_counter()
        store.save(big, rec)
        add = time.perf_counter() - t0
        target = store_dir / "restored.bin"
        t0 = time.perf_counter()
        assert store.restore(target, rec)
        restore = time.perf_counter() - t0
        rows.append([f"run {attempt + 1}", add, (1 << 30) / add / 1e9, restore, (1 << 30) / restore / 1e9])
        shutil.rmtree(store_dir)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-dvc", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"## Run cache\n\nMachine: {machine()}\n")
    print("### 3-stage pipeline: switch a param back (restore) vs forced rerun (s)\n")
    print(table(["tool", "restore s", "forced rerun s"], small_rows(not args.no_dvc)))
    if not args.skip_demo:
        print("\n### The demo: restore vs rerun of train + evaluate (s)\n")
        print(table(["what", "seconds"], demo_rows(None if args.no_dvc else ensure_dvc())))
    print("\n### Cache add and restore of a 1 GiB file (page cache warm)\n")
    print(table(["", "add s", "add GB/s", "restore s (verified)", "restore GB/s"], throughput_rows()))
    print(f"\nLoad average at end: {loadavg()}")


if __name__ == "__main__":
    main()
