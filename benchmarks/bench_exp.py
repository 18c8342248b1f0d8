"""An 8-point grid on the demo (issue 14): `hpipe exp run -j 2`, `-j 1`, and DVC's queue.

The grid is train.lr x train.batch_size (4 x 2). hpipe: `hpipe exp run -S ... -S ... -j N` in a
fresh copy of the demo (ingested and normalized first; those writers are held back at each point). DVC 3: the same
demo's train and evaluate as `cmd:` stages (the built-in stages' own code, reading the same Hangar
commit), in a git repository; `dvc exp run --queue -S ...` for each point, then `dvc queue start
-j 2`, timed until the queue is empty. Every training uses one thread at -j 2 (hpipe gives each
point one core; DVC's workers get HPIPE_THREADS=1 and OMP_NUM_THREADS=1). Then the same grid
again under a new name in the -j 2 project: every point is restored from the run cache.

Run from the repo root:  .venv/bin/python benchmarks/bench_exp.py [--no-dvc]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import ENV, REPO, WORK, demo_project, dvc_version, ensure_dvc, loadavg, machine, run, summary, table

PY = sys.executable
HPIPE = [PY, "-m", "hangar_pipe.cli"]
LRS, SIZES = ["0.005", "0.01", "0.02", "0.05"], ["32", "64"]
GRID = ["-S", f"train.lr={','.join(LRS)}", "-S", f"train.batch_size={','.join(SIZES)}"]


def ingested(name: str) -> tuple[Path, str]:
    """A fresh demo project with its data ingested: (folder, data commit)."""
    folder = demo_project(name)
    run([*HPIPE, "repro", "normalize"], folder)  # ingest, then the normalize stages (held back at each point)
    commit = json.loads(run([*HPIPE, "runs", "--json", "--all"], folder))[0]["data_commit"]
    return folder, commit


def timed_exp(folder: Path, *args: str) -> float:
    started = time.perf_counter()
    out = run([*HPIPE, "exp", "run", *GRID, *args], folder)
    seconds = time.perf_counter() - started
    assert "8 of 8 points done" in out, out
    return seconds


TRAIN_WITH = '{"images": "mnist_training_norm", "val_images": "mnist_validation_norm"}'
DVC_YAML = """stages:
  train:
    cmd: python -m hangar_pipe.core.call hangar_pipe.stages.train:run 'TRAIN_WITH'
    params: [train]
    outs: [models/model.pt]
    metrics: [metrics/train.json]
    plots: [metrics/train_history.csv]
  evaluate:
    cmd: python -m hangar_pipe.core.call hangar_pipe.stages.evaluate:run '{"images": "mnist_test_norm"}'
    deps: [models/model.pt]
    metrics: [metrics/eval.json]
    plots: [metrics/confusion.csv]
""".replace("TRAIN_WITH", TRAIN_WITH)


def dvc_grid(dvc: Path, data: Path, commit: str) -> float:
    """Seconds from the first `dvc exp run --queue` to an empty queue after `dvc queue start -j 2`."""
    folder = WORK / "exp" / "dvc"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    (folder / "dvc.yaml").write_text(DVC_YAML)
    env = {**ENV, "HPIPE_DATA_REPO": str(data), "HPIPE_DATA_COMMIT": commit, "HPIPE_THREADS": "1",
           "OMP_NUM_THREADS": "1",  # (DVC starts its queue workers as `dvc` from PATH)
           "PATH": os.pathsep.join([str(Path(PY).parent), str(dvc.parent), ENV.get("PATH", "")]),
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}

    def sh(*cmd: str | Path) -> str:
        done = subprocess.run([str(c) for c in cmd], cwd=folder, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    sh(dvc, "config", "core.analytics", "false")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "demo")
    sh(dvc, "repro")  # the baseline, as the hpipe projects have one (ingest there)
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "baseline")
    started = time.perf_counter()
    for lr in LRS:
        for size in SIZES:
            sh(dvc, "exp", "run", "--queue", "-S", f"train.lr={lr}", "-S", f"train.batch_size={size}")
    sh(dvc, "queue", "start", "-j", "2")
    while True:
        status = sh(dvc, "queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            break
        if time.perf_counter() - started > 1800 or "0 active, 0 idle" in status and "Running" not in status \
                and time.perf_counter() - started > 120:
            raise SystemExit(f"DVC's queue is stuck:\n{status}")
        time.sleep(1)
    seconds = time.perf_counter() - started
    shown = json.loads(sh(dvc, "exp", "show", "--json"))
    done = sum(1 for rev in shown for exp in (rev.get("experiments") or []) for _ in exp.get("revs", []))
    assert "Failed" not in status and done >= 8, (status, done)
    sh(dvc, "queue", "stop")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-dvc", action="store_true")
    args = ap.parse_args()
    where = machine()
    ENV["PYTHONPATH"] = str(REPO)
    two, commit = ingested("exp/hpipe-j2")
    one, _ = ingested("exp/hpipe-j1")
    rows = [["hpipe exp run -j 2", timed_exp(two, "-j", "2", "--name", "grid")]]
    rows.append(["hpipe exp run -j 1", timed_exp(one, "-j", "1", "--name", "grid")])
    dvc = None if args.no_dvc else ensure_dvc()
    if dvc is not None:
        rows.append(["dvc exp run --queue x8 + dvc queue start -j 2", dvc_grid(dvc, two, commit)])
    again = timed_exp(two, "-j", "2", "--name", "again")  # every point: restored from the run cache
    rows.append(["hpipe, the same grid again (new name: every point restored)", again])
    started = time.perf_counter()
    out = run([*HPIPE, "exp", "run", *GRID, "-j", "2", "--name", "grid"], two)
    rows.append(["hpipe, the same command again (points done before)", time.perf_counter() - started])
    assert out.count("done before") == 8
    print("## Experiments: an 8-point grid on the demo (train.lr x train.batch_size)\n")
    print(f"Machine: {where}; load average at end {loadavg()}"
          f"{f'; DVC {dvc_version(dvc)}' if dvc else ''}\n")
    print(table(["what", "seconds"], rows))
    if dvc is not None:
        ratio = rows[0][1] / rows[2][1]
        print(f"\nhpipe -j 2 / DVC queue -j 2: {ratio:.2f}x")
        summary("8-point grid on the demo, `exp run -j 2` / DVC queue -j 2", f"{ratio:.2f}x", "< 1x", ratio < 1)
    summary("the same 8-point grid again, restored", f"{again:.2f} s", "< 2 s", again < 2)


if __name__ == "__main__":
    main()
