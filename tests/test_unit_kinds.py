"""Dependency kinds plug in through one module and one registration line (tests/envdep.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project

from hangar_pipe import Pipeline, UserError
from hangar_pipe.core import kinds
from hangar_pipe.core.context import Workspace
from hangar_pipe.core.files import CodeDep, PathDep, PathOut
from hangar_pipe.hangar.kinds import HangarDep, HangarOut


@pytest.fixture
def env_kind() -> Iterator[None]:
    kinds.register("env", "envdep:EnvDep")  # the one line a new kind needs
    yield
    kinds.unregister("env")


@pytest.fixture
def seeded(project: Project, env_kind: None, monkeypatch: pytest.MonkeyPatch) -> Project:
    project.pipeline("""
        stages:
          draw:
            cmd: echo "$SEED" > out.txt
            deps: [{env: SEED}]
            outs: [out.txt]
    """)
    monkeypatch.setenv("SEED", "1")
    return project


def test_a_new_kind_is_declared_measured_and_explained(seeded: Project, monkeypatch) -> None:
    pipeline = Pipeline.load(seeded.root)
    assert pipeline.repro().named("ran") == ["draw"]
    assert "- env: SEED\n      value: '1'" in seeded.read("pipeline.lock")
    assert not pipeline.status().changed
    monkeypatch.setenv("SEED", "2")
    assert pipeline.status()["draw"].reasons == {"changed deps": {"env:SEED": "modified"}}
    monkeypatch.delenv("SEED")
    with pytest.raises(UserError, match="deps\\[0\\]: environment variable SEED is not set"):
        pipeline.status()


def test_a_record_without_a_hash_never_restores_stale_outputs(seeded: Project, monkeypatch) -> None:
    """The run key takes each kind's identity of its record: {env, value} here, not a missing hash."""
    pipeline = Pipeline.load(seeded.root)
    pipeline.repro()
    monkeypatch.setenv("SEED", "2")
    result = pipeline.repro()
    assert result["draw"].state == "ran" and seeded.read("out.txt") == "2\n"
    monkeypatch.setenv("SEED", "1")
    result = pipeline.repro()
    assert result["draw"].state == "restored" and seeded.read("out.txt") == "1\n"


def test_unknown_kinds_are_named_with_the_known_ones(project: Project, env_kind: None) -> None:
    project.pipeline("stages:\n  s: {cmd: x, deps: [{evn: SEED}]}\n")
    with pytest.raises(UserError, match="unknown dependency kind 'evn' \\(did you mean 'env'\\?\\)"):
        Pipeline.load(project.root)
    project.pipeline("stages:\n  s: {cmd: x, outs: [{env: SEED}]}\n")
    with pytest.raises(UserError, match="outs\\[0\\].env: an environment variable is not an output"):
        Pipeline.load(project.root)


@pytest.mark.parametrize("item", [
    PathDep("data/x.csv"), PathOut("model.pt", role="metric"), CodeDep("pkg.mod", __file__),
    HangarDep(".", None, ("images",)), HangarOut("../other", "dev", ("labels",)),
])
def test_a_record_names_the_item_it_belongs_to(item: kinds.Kind) -> None:
    """`key_of` a record gives the item's key, whatever order the record's fields are in."""
    value = {"path": getattr(item, "path", ""), "code": getattr(item, "module", ""),
             "hangar": getattr(item, "label", "")}[item.tag]
    rec = {"size": 1, "hash": "00", item.tag: value}
    assert kinds.tag_of(rec) == item.tag
    assert kinds.record_key(rec) == item.key


def test_only_outputs_that_write_data_say_so(tmp_path: Path) -> None:
    assert HangarOut(".", None, ("c",)).writes == kinds.DataTarget(".", None)
    for item in (HangarDep(".", None, ("c",)), PathOut("x"), PathDep("x")):
        assert item.writes is None
    assert PathOut("x").cached and not PathOut("x", cache=False).cached
    assert not HangarOut(".", None, ("c",)).cached
    assert PathOut("m.json", role="metric").file(Workspace(tmp_path)) == tmp_path / "m.json"


def test_a_lock_record_of_an_unregistered_kind_is_named(project: Project) -> None:
    project.pipeline("stages:\n  s: {cmd: x}\n")
    project.write("pipeline.lock", "schema: hpipe/1\nstages:\n  s:\n    cmd: x\n    deps:\n    - env: SEED\n      value: '1'\n")
    with pytest.raises(UserError, match=r"stages.s.deps\[0\]: a record of an unknown kind 'env'"):
        Pipeline.load(project.root).status()
