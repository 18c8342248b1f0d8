"""Resume after a kill, end to end through `hpipe`: a stage's HPIPE_STATE_DIR outlives a killed
run and is there for the next one, is deleted once the stage is recorded, `--no-resume` starts
over, `gc` removes the orphans; the built-in train stage killed mid-epoch resumes to the same
bytes as a run that was never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import conftest
import numpy as np
import pytest
from conftest import Project

STEPS = """
    import os, pathlib, time
    state = pathlib.Path(os.environ["HPIPE_STATE_DIR"])
    saved = state / "step"
    start = int(saved.read_text()) if saved.exists() else 0
    print(f"starting after step {start}", flush=True)
    for step in range(start + 1, 4):
        saved.write_text(str(step))
        if step == 2 and pathlib.Path("stop-at-2").exists():
            pathlib.Path("stopped").write_text("")
            time.sleep(60)
    pathlib.Path("out.txt").write_text(f"resumed after step {start}\\n")
"""


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def kill_everything(project: Project, proc: subprocess.Popen[str]) -> None:
    """SIGKILL the stage's process group and hpipe itself: a power cut, as far as they know."""
    for entry in (project.root / ".hpipe/running").iterdir():
        os.killpg(int(entry.name), signal.SIGKILL)
    proc.kill()
    proc.communicate(timeout=30)


def states(project: Project) -> dict[str, str]:
    """{stage/run key: the step saved there} under .hpipe/state."""
    base = project.root / ".hpipe/state"
    return {str(f.parent.relative_to(base)): f.read_text() for f in base.glob("*/*/step")}


def killed_at_step_2(project: Project) -> None:
    project.write("stop-at-2", "")
    proc = project.popen("repro")
    wait_for(project.root / "stopped", proc)
    kill_everything(project, proc)
    (project.root / "stopped").unlink()
    (project.root / "stop-at-2").unlink()


def test_a_killed_stage_finds_its_state_again_until_it_is_recorded(project: Project) -> None:
    project.write("steps.py", STEPS)
    project.write("params.yaml", "work: {v: 1}\n")
    project.pipeline("""
        stages:
          work: {cmd: python steps.py, deps: [steps.py], params: [work], outs: [out.txt]}
    """)
    killed_at_step_2(project)
    (first,) = states(project).items()
    assert first[0].startswith("work/") and first[1] == "2"
    gc = project.hpipe("gc").out
    assert gc.strip().endswith("and 0 run-cache entries."), "the stage's current state is kept"
    done = project.hpipe("repro")
    assert "starting after step 2" in done.out and project.read("out.txt") == "resumed after step 2\n"
    assert states(project) == {} and not (project.root / ".hpipe/state/work").exists(), "recorded: deleted"

    project.write("params.yaml", "work: {v: 2}\n")
    killed_at_step_2(project)
    assert list(states(project).values()) == ["2"]
    done = project.hpipe("repro", "--no-resume")
    assert project.read("out.txt") == "resumed after step 0\n" and states(project) == {}

    project.write("params.yaml", "work: {v: 3}\n")
    killed_at_step_2(project)
    orphan = project.root / ".hpipe/state" / next(iter(states(project)))
    project.write("params.yaml", "work: {v: 2}\n")  # back to what is recorded: v3's state is an orphan
    dry = project.hpipe("gc", "--dry-run").out
    assert dry.strip().endswith(", 0 run-cache entries and 1 resume states (0.0 MB)."), dry
    assert orphan.exists()
    assert project.hpipe("gc").out.startswith("Removed ")
    assert not orphan.exists() and states(project) == {}


TRAIN_PIPELINE = """
    data: {repo: .}
    stages:
      ingest:
        uses: ingest
        with: {source: raw.npz, splits: {training: 0.6, validation: 0.2, test: 0.2}, seed: 0}
        deps: [raw.npz]
        outs:
          - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                     mnist_validation_labels, mnist_test_images, mnist_test_labels]
      train:
        uses: train
        deps:
          - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                     mnist_validation_labels]
        params: [train]
        outs: [models/model.pt]
        metrics: [metrics/train.json]
        plots: [metrics/train_history.csv]
"""
TRAIN_PARAMS = """
    train:
      model: {kind: mlp, layers: [64, 128, 10]}
      optimizer: adam
      lr: 0.001
      epochs: 6
      batch_size: 2
      seed: 0
      device: cpu
"""
OUTPUTS = ("models/model.pt", "metrics/train.json", "metrics/train_history.csv")


def noisy_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    centers = rng.integers(0, 200, size=(10, 64))
    x = np.clip(centers[y] + rng.integers(0, 120, size=(n, 64)), 0, 255).astype(np.uint8)
    return x.reshape(n, 8, 8), y


def test_train_killed_mid_epoch_resumes_to_the_same_bytes(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conftest.ENV, "OMP_NUM_THREADS", "1")  # two spinning threads on a busy machine: 100x slower
    x, y = noisy_digits(1500)
    np.savez(project.root / "raw.npz", x=x, y=y)
    project.pipeline(TRAIN_PIPELINE)
    project.write("params.yaml", TRAIN_PARAMS)
    project.hpipe("repro")
    straight = {rel: (project.root / rel).read_bytes() for rel in OUTPUTS}
    assert not (project.root / ".hpipe/state").exists() or not any((project.root / ".hpipe/state").iterdir())

    proc = project.popen("repro", "-f", "train")
    assert proc.stdout is not None
    for line in proc.stdout:  # the second epoch is done and saved: kill the third mid-way
        if line.startswith("epoch 2/6:"):
            break
    time.sleep(0.1)
    kill_everything(project, proc)
    assert not (project.root / "models/model.pt").exists()
    (saved,) = (project.root / ".hpipe/state/train").iterdir()

    done = project.hpipe("repro", "--no-run-cache")
    resumed_at = [line for line in done.out.splitlines() if line.startswith("resuming train from epoch")]
    assert len(resumed_at) == 1 and resumed_at[0].split()[-1] in ("3/6", "4/6"), done.out
    assert "epoch 1/6:" not in done.out and "epoch 6/6:" in done.out
    assert {rel: (project.root / rel).read_bytes() for rel in OUTPUTS} == straight
    assert not saved.exists()
