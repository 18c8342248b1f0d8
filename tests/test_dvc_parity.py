"""Behaviours from DVC's own functional tests that hpipe now matches (issue 9)."""

from __future__ import annotations

import json
import subprocess

import yaml
from conftest import Project, user_error

from hangar_pipe.core.params import compare_values


def git_commit(project: Project, message: str = "base") -> None:
    subprocess.run(f"git init -q 2>/dev/null; git add -A && git -c user.email=t@t -c user.name=t"
                   f" commit -qm {message}", shell=True, cwd=project.root, check=True)


def test_a_bare_number_is_a_metric(project: Project) -> None:
    project.write("params.yaml", "v: 1.1\n")
    project.pipeline("""
        stages:
          score:
            cmd: python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['v'])" > m.txt
            params: [v]
            metrics: [m.txt]
    """)
    project.hpipe("repro")
    assert json.loads(project.hpipe("metrics", "show", "--json").out) == {"m.txt": {"value": 1.1}}
    assert yaml.safe_load(project.read("pipeline.lock"))["stages"]["score"]["outs"][0]["metrics"] == {
        "value": 1.1}
    project.write("m.txt", "1.3\n")
    rows = json.loads(project.hpipe("metrics", "diff", "--json").out)
    assert [(r["file"], r["name"], r["old"], r["new"]) for r in rows] == [("m.txt", "value", 1.1, 1.3)]


def test_a_revision_without_a_lock_is_an_empty_side(three_stage: Project) -> None:
    git_commit(three_stage)  # no pipeline.lock yet
    three_stage.hpipe("repro")
    rows = json.loads(three_stage.hpipe("metrics", "diff", "HEAD", "--json").out)
    assert rows == [{"file": "metrics.json", "name": "score", "old": None, "new": 12, "change": None}]
    params = json.loads(three_stage.hpipe("params", "diff", "HEAD", "--json").out)
    assert {r["name"] for r in params} >= {"prepare.scale", "train.lr"} and all(r["old"] is None for r in params)
    line = user_error(three_stage.hpipe("metrics", "diff", "nope", check=None))
    assert line == ("hpipe: error: cannot read pipeline.lock at 'nope': not a git revision here"
                    " (nor lock, workspace, a run id or data:<commit>)")


def test_params_keys_are_sorted_in_the_lock(project: Project) -> None:
    project.write("params.yaml", "zeta: 1\nalpha: 2\nmid: 3\n")
    project.pipeline("stages:\n  s: {cmd: 'true', params: [zeta, alpha, mid]}\n")
    project.hpipe("repro")
    assert list(yaml.safe_load(project.read("pipeline.lock"))["stages"]["s"]["params"]["params.yaml"]) == [
        "alpha", "mid", "zeta"]
    assert "params.yaml:\n        alpha: 2\n        mid: 3\n        zeta: 1\n" in project.read("pipeline.lock")


def test_an_empty_mapping_that_gains_keys_is_not_deleted() -> None:
    assert compare_values({"cfg": {}}, {"cfg": {"foo": 1, "bar": 2}}) == {"cfg.bar": "new", "cfg.foo": "new"}
    assert compare_values({"cfg": {"foo": 1}}, {"cfg": {}}) == {"cfg.foo": "deleted"}


def test_params_diff_with_the_params_file_deleted(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    (three_stage.root / "params.yaml").unlink()
    rows = json.loads(three_stage.hpipe("params", "diff", "--json").out)
    assert {r["name"]: (r["old"], r["new"]) for r in rows}["train.lr"] == (0.1, None)


def test_params_show(three_stage: Project) -> None:
    shown = json.loads(three_stage.hpipe("params", "show", "--json").out)
    assert shown == {"params.yaml": {"prepare.scale": 2, "train.lr": 0.1, "train.epochs": 3,
                                     "train.opt.name": "sgd", "train.opt.momentum": 0.9}}
    assert "| params.yaml | train.lr | 0.1 |" in three_stage.hpipe("params", "show", "--md").out
