"""The decision rules as pure functions: stage_reasons, plan, describe and the run key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.decisions import Measured, describe, lock_entry, stage_reasons
from hangar_pipe.core.graph import Graph
from hangar_pipe.core.repro import plan
from hangar_pipe.core.runcache import run_key
from hangar_pipe.core.spec import PipelineSpec, Stage, load_pipeline


def spec_of(tmp_path: Path, text: str) -> PipelineSpec:
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(text))
    return load_pipeline(tmp_path / "pipeline.yaml")


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    return spec_of(tmp_path, """
        stages:
          train:
            cmd: python train.py
            deps: [data.csv]
            params: [train.lr, train.epochs]
            outs: [model.pt]
    """).stages["train"]


def rec(path: str, digest: str) -> dict[str, Any]:
    return {"path": path, "hash": digest, "size": 1}


def now(**changes: Any) -> tuple[Measured, dict[str, Any]]:
    deps = {"data.csv": rec("data.csv", changes.get("data", "d1"))}
    params = {"params.yaml": {"train.lr": changes.get("lr", 0.1), "train.epochs": 3}}
    outs = {"model.pt": None if changes.get("no_model") else rec("model.pt", changes.get("model", "m1"))}
    return Measured(deps, params), outs


def reasons(stage: Stage, tmp_path: Path, entry: dict[str, Any] | None, **changes: Any) -> dict[str, Any]:
    measured, outs = now(**changes)
    return stage_reasons(stage, entry, measured, outs, Workspace(tmp_path))


@pytest.fixture
def entry(stage: Stage) -> dict[str, Any]:
    measured, outs = now()
    return lock_entry(stage, measured, outs)


def test_up_to_date_when_nothing_changed(stage, entry, tmp_path) -> None:
    assert reasons(stage, tmp_path, entry) == {}


def test_no_lock_entry(stage, tmp_path) -> None:
    assert reasons(stage, tmp_path, None) == {"no lock entry": True}


def test_each_kind_of_change_is_named(stage, entry, tmp_path) -> None:
    assert reasons(stage, tmp_path, entry, data="d2") == {"changed deps": {"data.csv": "modified"}}
    assert reasons(stage, tmp_path, entry, lr=0.2) == {
        "changed params": {"params.yaml": {"train.lr": "modified"}}}
    assert reasons(stage, tmp_path, entry, no_model=True) == {"changed outs": {"model.pt": "deleted"}}
    assert reasons(stage, tmp_path, entry, model="m2") == {"changed outs": {"model.pt": "modified"}}
    every = reasons(stage, tmp_path, entry, data="d2", lr=0.2, model="m2")
    assert list(every) == ["changed deps", "changed params", "changed outs"]


def test_definition_and_removed_items(stage, entry, tmp_path) -> None:
    old = {**entry, "cmd": "python old.py", "deps": [*entry["deps"], rec("gone.csv", "g")]}
    assert reasons(stage, tmp_path, old) == {"changed definition": {"cmd": "modified"},
                                             "changed deps": {"gone.csv": "removed"}}


def test_forced_and_always_changed(stage, entry, tmp_path) -> None:
    measured, outs = now()
    assert stage_reasons(stage, entry, measured, outs, Workspace(tmp_path), forced=True) == {"forced": True}
    stage.always_changed = True
    assert reasons(stage, tmp_path, entry) == {"always changed": True}


def test_describe_is_one_line_per_reason() -> None:
    text = describe({"changed params": {"params.yaml": {"train.lr": "modified"}},
                     "changed deps": {"data.csv": "modified"}, "upstream changed": ["prepare"],
                     "forced": True})
    assert text == ("changed params: params.yaml: train.lr (modified); changed deps: data.csv (modified);"
                    " upstream changed: prepare; forced")


def test_plan_selects_and_holds(tmp_path) -> None:
    spec = spec_of(tmp_path, """
        stages:
          ingest: {cmd: x, outs: [{hangar: [images]}]}
          prep: {cmd: x, deps: [{hangar: [images]}], outs: [p]}
          train: {cmd: x, deps: [p], outs: [m], frozen: true}
          other: {cmd: x, outs: [o]}
    """)
    graph = Graph.build(spec)
    assert plan(graph, spec, None) == (["ingest", "other", "prep", "train"], {"train": "frozen"})
    assert plan(graph, spec, ["prep"], pinned=True) == (["ingest", "prep"], {"ingest": "pinned"})
    assert plan(graph, spec, ["prep"], single=True) == (["prep"], {})
    assert plan(graph, spec, ["prep"], downstream=True)[0] == ["prep", "train"]


def test_run_key_is_content_not_place(stage) -> None:
    measured, _ = now()
    same = Measured({"data.csv": {"path": "data.csv", "hash": "d1", "size": 999}}, measured.params)
    assert run_key(stage, measured) == run_key(stage, same), "size is not part of the key"
    for other in (now(data="d2")[0], now(lr=0.2)[0]):
        assert run_key(stage, other) != run_key(stage, measured)
