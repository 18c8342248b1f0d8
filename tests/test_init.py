"""`hpipe init --hangar`: a working ingest -> train -> evaluate starter on the user's own file."""

from __future__ import annotations

import json

import numpy as np
from conftest import Project, user_error


def blobs_csv(project: Project, n: int = 240, features: int = 12, classes: int = 3) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    x = rng.random((n, features)) * 0.2 + (y[:, None] == np.arange(features) % classes) * 0.8
    rows = [",".join([*(f"f{i}" for i in range(features)), "label"])]
    rows += [",".join([*(f"{v:.4f}" for v in a), str(b)]) for a, b in zip(x, y, strict=True)]
    project.write("blobs.csv", "\n".join(rows) + "\n")


def test_init_hangar_runs_on_the_users_file(project: Project) -> None:
    blobs_csv(project)
    done = project.hpipe("init", "--hangar", "--source", "blobs.csv", "--prefix", "blobs")
    assert done.out.splitlines()[:2] == ["wrote pipeline.yaml", "wrote params.yaml"]
    assert "layers: [12, 128, 3]" in project.read("params.yaml"), "the model is sized from the file"
    assert "# " in project.read("pipeline.yaml") and "blobs_training_images" in project.read("pipeline.yaml")
    project.write("params.yaml", project.read("params.yaml").replace("epochs: 10", "epochs: 3"))
    ran = project.hpipe("repro", timeout=300)
    assert project.ran(ran) == ["ingest", "train", "evaluate"]
    metrics = json.loads(project.read("metrics/eval.json"))
    assert metrics["test_samples"] == 36 and metrics["accuracy"] > 0.9
    assert project.hpipe("status").out == "Everything is up to date.\n"
    # the user's file is a dependency: a changed label makes a new data commit and reruns
    project.write("blobs.csv", project.read("blobs.csv").replace(",0\n", ",1\n", 1))
    assert project.hpipe("status").out.startswith("• ingest: would run (changed deps: blobs.csv")
    again = project.hpipe("init", "--hangar", "--source", "blobs.csv")
    assert "pipeline.yaml exists, left as it is" in again.out


def test_init_hangar_with_a_missing_file_is_one_line(project: Project) -> None:
    assert "nope.csv" in user_error(project.hpipe("init", "--hangar", "--source", "nope.csv", check=None))
    assert not project.exists("pipeline.yaml")


def test_mistakes_before_the_hangar_repository_exists_are_one_line(project: Project) -> None:
    """No .hangar yet (ingest will make it): a data.ref other than a new repository's branch, or
    a column no stage writes, is named before anything runs."""
    blobs_csv(project)
    project.hpipe("init", "--hangar", "--source", "blobs.csv", "--prefix", "blobs")
    pipeline = project.read("pipeline.yaml")
    project.write("pipeline.yaml", pipeline.replace("ref: master", "ref: main"))
    line = user_error(project.hpipe("repro", check=None))
    assert "writes branch 'main' (data.ref)" in line and "branches: master" in line
    assert not project.exists(".hangar"), "nothing ran"
    project.write("pipeline.yaml", pipeline.replace("[blobs_test_images, blobs_test_labels]",
                                                    "[blobs_test_images, blobs_tst_labels]"))
    line = user_error(project.hpipe("status", check=None))
    assert "hangar column 'blobs_tst_labels' is written by no stage" in line
