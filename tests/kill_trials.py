"""SIGKILL trials: kill `hpipe repro` at a random moment of a real pipeline, run it again, and
check that it recovered with no manual step, that no stage ran twice at once, and that nothing
is corrupted or lost. Used by tests/test_kill.py (a few trials) and benchmarks/bench_kill.py (100).

The pipeline: a Hangar ingest, a stage writing a folder (which logs any overlap with another
copy of itself), train and evaluate. Each trial flips the params between two settings whose
outcomes are known from one clean run each; three trials in four run with `--no-run-cache`, so
every stage really runs, the fourth lets the run cache restore them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HPIPE = [str(Path(sys.executable).with_name("hpipe"))]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
       "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

PIPELINE = """\
data: {repo: .}
stages:
  ingest:
    uses: ingest
    with: {source: raw.npz, splits: {training: 0.6, validation: 0.2, test: 0.2}, seed: 0}
    params: [ingest_seed]
    outs:
      - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                 mnist_validation_labels, mnist_test_images, mnist_test_labels]
  folder:
    cmd: python folder.py
    deps: [folder.py, {hangar: [mnist_training_labels]}]
    params: [folder]
    outs: [parts]
  train:
    uses: train
    deps:
      - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                 mnist_validation_labels]
    params: [train]
    outs: [models/model.pt]
    metrics: [metrics/train.json]
  evaluate:
    uses: evaluate
    deps: [models/model.pt, parts, {hangar: [mnist_test_images, mnist_test_labels]}]
    metrics: [metrics/eval.json]
"""

FOLDER = """\
import os, pathlib, time, yaml
n = yaml.safe_load(open("params.yaml"))["folder"]["n"]
log = pathlib.Path("folder-starts.txt")
earlier = [int(p) for p in log.read_text().split()] if log.exists() else []
def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
with log.open("a") as fh:
    fh.write(f"{os.getpid()}\\n")
if any(alive(p) for p in earlier):
    with open("overlap.txt", "a") as fh:
        fh.write("folder\\n")
os.makedirs("parts", exist_ok=True)
for i in range(n):
    time.sleep(0.2)
    pathlib.Path(f"parts/part_{i}.txt").write_text(f"{i} of {n}\\n")
"""


def params(setting: int) -> str:
    return (f"ingest_seed: {setting}\nfolder: {{n: {4 + setting}}}\n"
            f"train: {{model: {{kind: mlp, layers: [64, 16, 10]}}, optimizer: adam, lr: 0.01,"
            f" epochs: 1, batch_size: 32, seed: {setting}, device: cpu}}\n")


def make_project(root: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 240)
    x = np.clip(rng.integers(0, 200, (10, 64))[y] + rng.integers(0, 40, (240, 64)), 0, 255)
    np.savez(root / "raw.npz", x=x.astype(np.uint8).reshape(240, 8, 8), y=y)
    (root / "pipeline.yaml").write_text(PIPELINE)
    (root / "folder.py").write_text(FOLDER)
    (root / "params.yaml").write_text(params(0))


def hpipe(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HPIPE, *args], cwd=root, capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def outcome(root: Path) -> dict[str, object]:
    """What a run leaves that must not depend on whether it was killed on the way."""
    parts = {p.name: p.read_text() for p in sorted((root / "parts").iterdir())} if (root / "parts").is_dir() else None
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    return {"parts": parts, "accuracy": metrics.get("accuracy"), "loss": metrics.get("loss")}


def hangar_commits(root: Path) -> set[str]:
    """Every commit reachable from a branch of the project's Hangar repository."""
    from hangar_pipe.hangar.store import HangarStore

    store = HangarStore(root)
    try:
        seen: set[str] = set()
        todo = list(store.branches().values())
        while todo:
            if (commit := todo.pop()) not in seen:
                seen.add(commit)
                todo += store.parents(commit)
        return seen
    finally:
        store.close()


@dataclass
class Figures:
    trials: int = 0
    killed_mid_stage: int = 0
    recovered: int = 0
    overlaps: int = 0
    corrupted: int = 0
    lost_commits: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def reference(root: Path) -> tuple[dict[int, dict[str, object]], float]:
    """Each setting's outcome from clean runs, and the longest run's seconds."""
    expected, longest = {}, 0.0
    for setting in (0, 1):
        (root / "params.yaml").write_text(params(setting))
        t0 = time.monotonic()
        done = hpipe(root, "repro")
        assert done.returncode == 0, done.stderr
        longest = max(longest, time.monotonic() - t0)
        expected[setting] = outcome(root)
    return expected, longest


def trial(root: Path, setting: int, at: float, expected: dict[str, object], figures: Figures,
          run_cache: bool) -> None:
    """Kill a repro at `at` seconds, recover, check. Without the run cache every stage runs."""
    commits = hangar_commits(root)
    (root / "params.yaml").write_text(params(setting))
    args = ["repro"] if run_cache else ["repro", "--no-run-cache"]
    proc = subprocess.Popen([*HPIPE, *args], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    time.sleep(at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    running = root / ".hpipe" / "running"
    figures.killed_mid_stage += bool(running.is_dir() and any(running.iterdir()))
    done = hpipe(root, "repro")
    status = hpipe(root, "status")
    figures.trials += 1
    if done.returncode != 0 or status.stdout.strip() != "Everything is up to date.":
        figures.problems.append(f"not recovered at {at:.2f}s: {done.stderr[-300:]} {status.stdout[-300:]}")
    else:
        figures.recovered += 1
    if (root / "overlap.txt").exists():
        figures.overlaps += 1
        figures.problems.append(f"a stage ran twice at once (killed at {at:.2f}s)")
        (root / "overlap.txt").unlink()
    if done.returncode == 0 and outcome(root) != expected:
        figures.corrupted += 1
        figures.problems.append(f"outputs differ from a clean run's (killed at {at:.2f}s)")
    if lost := commits - hangar_commits(root):
        figures.lost_commits += len(lost)
        figures.problems.append(f"Hangar commits lost: {sorted(lost)}")


def run_trials(root: Path, count: int, seed: int = 0) -> Figures:
    """`count` trials in the project folder `root` (made here), kill moments drawn with `seed`."""
    make_project(root)
    t0 = time.monotonic()
    expected, longest = reference(root)
    rng = random.Random(seed)
    figures = Figures()
    for i in range(count):
        setting = i % 2
        trial(root, setting, rng.uniform(0.1, longest), expected[setting], figures, run_cache=i % 4 == 3)
    figures.seconds = time.monotonic() - t0
    return figures
