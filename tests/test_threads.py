"""The CPU threads of built-in stages: split among the stages that run at once, recorded in the
lock and the metrics, and reused for the same inputs on a machine with another core count."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import yaml
from conftest import ENV, HPIPE, Done, Project
from hangar_repo import Repo
from test_training import tiny_data

from hangar_pipe.core import threads
from hangar_pipe.core.threads import Choice, choose

PIPELINE = """
    stages:
      a:
        uses: train
        with: {images: x, labels: y, val_images: x, val_labels: y, checkpoint: models/a.pt,
               metrics: metrics/a.json, history: metrics/a.csv}
        deps: [{hangar: [x, y]}]
        params: [train]
        outs: [models/a.pt]
        metrics: [metrics/a.json]
      b:
        uses: train
        with: {images: x, labels: y, val_images: x, val_labels: y, checkpoint: models/b.pt,
               metrics: metrics/b.json, history: metrics/b.csv}
        deps: [{hangar: [x, y]}]
        params: [train]
        outs: [models/b.pt]
        metrics: [metrics/b.json]
"""


def hpipe(project: Project, *args: str, one_core: bool = False) -> Done:
    """hpipe without HPIPE_THREADS (the tests' default of one), so the run chooses; optionally
    pinned to one CPU, as a machine with one core."""
    env = {k: v for k, v in ENV.items() if k != threads.ENV}
    proc = subprocess.run([*HPIPE, *args], cwd=project.root, capture_output=True, text=True, env=env,
                          timeout=300, preexec_fn=(lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
                          if one_core else None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Done(proc.returncode, proc.stdout, proc.stderr)


def recorded(project: Project, stage: str) -> tuple[int, int]:
    """(the lock's thread count, the metrics') of a stage."""
    lock = yaml.safe_load(project.read("pipeline.lock"))
    return lock["stages"][stage]["threads"], json.loads(project.read(f"metrics/{stage}.json"))["threads"]


def test_threads_are_split_recorded_and_reused_on_another_machine(project: Project) -> None:
    x, y = tiny_data(120)
    Repo(project.root).write("data", x={i: x[i].reshape(-1).astype(np.float32) / 255 for i in range(120)},
                             y={i: np.array([y[i]], dtype=np.int64) for i in range(120)})
    project.pipeline(PIPELINE)
    project.write("params.yaml", "train: {epochs: 1, batch_size: 16, device: cpu, model: {kind: mlp, layers: [auto, 8, 10]}}\n")
    split = max(1, threads.cores() // 2)
    done = hpipe(project, "repro", "-j", "2")
    assert done.out.count("note: built-in stages use") == 1  # said once
    assert f"use {split} CPU thread" in done.out and f"({threads.cores()} cores / -j 2;" in done.out
    assert recorded(project, "a") == recorded(project, "b") == (split, split)
    more = threads.cores() + 1  # never what auto chooses
    done = hpipe(project, "repro", "-f", "-s", "a", "--threads", str(more))
    assert f"note: a: {more} threads (--threads); run " in done.out and f"with the same inputs used {split}" in done.out
    assert recorded(project, "a") == (more, more)
    model = (project.root / "models/a.pt").read_bytes()
    done = hpipe(project, "repro", "--verify", "-s", "a", one_core=True)  # another machine: one core
    assert f"note: a: {more} threads, as run " in done.out and "(1 would be the default here)" in done.out
    assert "reproduced exactly" in done.out
    assert recorded(project, "a") == (more, more) and (project.root / "models/a.pt").read_bytes() == model


@pytest.mark.parametrize(("given", "recorded_", "why", "note"), [
    (None, None, "cores / -j 1", None),
    (3, None, "--threads", None),
    (3, ("run1", 3), "--threads", None),
    (3, ("run1", 2), "--threads", "3 threads (--threads); run run1 with the same inputs used 2"),
    (None, ("run1", 999), "as recorded by run run1", "999 threads, as run run1 with the same inputs recorded"),
])
def test_the_choice(given: int | None, recorded_: tuple[str, int] | None, why: str, note: str | None) -> None:
    choice = choose(given, 1, recorded_)
    assert isinstance(choice, Choice) and why in choice.why
    assert choice.count == (given or (recorded_[1] if recorded_ else threads.cores()))
    assert (choice.note is None) if note is None else (choice.note is not None and choice.note.startswith(note))
    assert choose(None, 64, None).count >= 1  # never fewer than one
    assert threads.recorded_count({"threads": 4}) == 4 and threads.recorded_count({"threads": True}) is None
