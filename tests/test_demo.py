"""The README's main job: the top-level demo pipeline runs end to end, then is up to date."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import Project

REPO = Path(__file__).resolve().parent.parent


def test_demo_pipeline(project: Project) -> None:
    for name in ("pipeline.yaml", "params.yaml"):
        shutil.copy(REPO / name, project.root / name)
    shutil.copytree(REPO / "demo", project.root / "demo")
    first = project.hpipe("repro")
    assert project.ran(first) == ["prepare", "train", "evaluate"]
    assert json.loads(project.read("metrics/eval.json"))["accuracy"] > 0.85
    assert project.hpipe("repro").out.strip().endswith("Everything is up to date.")
    project.write("params.yaml", project.read("params.yaml").replace("epochs: 50", "epochs: 60"))
    assert project.ran(project.hpipe("repro")) == ["train", "evaluate"]
