"""One repro call in-process: its context, the lock under the mutex, the run cache's output rule."""

from __future__ import annotations

from conftest import Project

from hangar_pipe import Pipeline, ReproOptions
from hangar_pipe.core.reporter import SilentReporter
from hangar_pipe.core.repro import repro


def test_the_lock_is_read_under_the_mutex(three_stage: Project) -> None:
    """A run that waited for another one decides on the lock as that one left it."""
    pipeline = Pipeline.load(three_stage.root)
    pipeline.repro()
    with pipeline.workspace() as ws:
        ctx = pipeline.context(ws, ReproOptions(), SilentReporter())  # built before the other run
        three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
        assert three_stage.hpipe("repro").code == 0  # the other run records train with lr 0.2
        result = repro(ctx)
    assert result.named("skipped") == ["prepare", "train", "evaluate"], "decided on a fresh copy of the lock"
    assert "lr: 0.2" in three_stage.read("pipeline.lock")


def test_restore_needs_every_declared_output(project: Project) -> None:
    """An earlier run that made fewer outputs than the stage now declares is not restored."""
    project.write("in.txt", "1")
    body = "cmd: cp in.txt a.txt && cp in.txt b.txt\n    deps: [in.txt]\n    outs: [a.txt{more}]\n"
    project.pipeline("stages:\n  s:\n    " + body.format(more=""))
    project.hpipe("repro")
    project.pipeline("stages:\n  s:\n    " + body.format(more=", b.txt"))  # same command and deps
    (project.root / "b.txt").unlink()
    result = Pipeline.load(project.root).repro()
    assert result["s"].state == "ran" and project.read("b.txt") == "1"
