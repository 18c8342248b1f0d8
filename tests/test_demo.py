"""The README's main job: the top-level demo pipeline, end to end, on the real MNIST 5k subset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from conftest import Project

REPO = Path(__file__).resolve().parent.parent


STAGES = ["ingest", "normalize@training", "normalize@validation", "normalize@test", "train", "evaluate"]


def demo(project: Project) -> None:
    """The demo's files: its pipeline and the function of its normalize stages."""
    shutil.copy(REPO / "pipeline.yaml", project.root / "pipeline.yaml")
    (project.root / "examples").mkdir()
    shutil.copy(REPO / "examples" / "features.py", project.root / "examples" / "features.py")


def test_demo_pipeline_and_data_commit_reproduction(project: Project) -> None:
    demo(project)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["epochs"] = 2  # the demo's 10 epochs, shortened for the test suite
    project.write("params.yaml", yaml.safe_dump(params))
    first = project.hpipe("repro")
    assert project.ran(first) == STAGES
    assert "ingest: committed a=" in first.out
    metrics = json.loads(project.read("metrics/eval.json"))
    assert metrics["test_samples"] == 750 and metrics["accuracy"] > 0.8
    first_eval, first_train = project.read("metrics/eval.json"), project.read("metrics/train.json")
    first_commit = metrics["data_commit"]
    assert project.hpipe("repro").out.strip().endswith("Everything is up to date.")

    # new data: the same source split with another seed makes a new data commit
    project.pipeline(project.read("pipeline.yaml").replace("seed: 0}", "seed: 1}"))
    second = project.hpipe("repro")
    assert project.ran(second) == STAGES
    assert "normalize@training: 3493 samples changed (0 added, 3493 modified, 0 removed)" in second.out
    assert "→ train: running (changed deps: 4 columns (" in second.out and " modified" in second.out
    assert project.read("metrics/train.json") != first_train

    pinned = project.hpipe("repro", "--data-commit", first_commit)  # seen before: restored
    assert "· ingest: pinned" in pinned.out and "· normalize@test: pinned" in pinned.out
    assert "↺ train: restored from run" in pinned.out and "↺ evaluate: restored from run" in pinned.out
    assert project.read("metrics/train.json") == first_train
    assert project.read("metrics/eval.json") == first_eval
    states = {s["name"]: s["state"] for s in json.loads(project.hpipe("runs", "--json").out)[0]["stages"]}
    assert states["train"] == "restored" and states["normalize@training"] == "pinned"
    retrained = project.hpipe("repro", "--data-commit", first_commit, "--no-run-cache", "-f")
    assert project.ran(retrained) == ["train", "evaluate"]  # really rerun: the same bytes again
    assert project.read("metrics/train.json") == first_train
    assert project.read("metrics/eval.json") == first_eval


def test_demo_verifies(project: Project) -> None:
    """`repro --verify` reruns the deterministic demo and finds the same metrics and the same
    normalized samples."""
    demo(project)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["epochs"] = 1
    project.write("params.yaml", yaml.safe_dump(params))
    project.hpipe("repro")
    done = project.hpipe("repro", "--verify", "train", "-s")
    assert "verify train: reproduced exactly" in done.out
    done = project.hpipe("repro", "--verify", "normalize", "-s")
    assert "normalize@training: verified 3500 samples" in done.out
    assert "verify normalize@test: reproduced exactly" in done.out
