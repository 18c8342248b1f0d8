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
from hangar_pipe.errors import UserError


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


def test_run_key_is_pinned(tmp_path) -> None:
    """The run cache of every user depends on this digest; the one from before issue 8."""
    stage = spec_of(tmp_path, """
        stages:
          train:
            cmd: python train.py
            deps: [data.csv, {hangar: [images]}]
            params: [train.lr, train.epochs]
            outs: [model.pt]
    """).stages["train"]
    measured = Measured({"data.csv": {"path": "data.csv", "hash": "d1", "size": 1},
                         "hangar:.": {"hangar": ".", "ref": "master", "commit": "a=1",
                                      "columns": {"images": {"fingerprint": "f1", "samples": 3}}}},
                        {"params.yaml": {"train.lr": 0.1, "train.epochs": 3}})
    assert run_key(stage, measured) == "4ef1fa8ea16ddda44aed107e43d68c46"


def test_hangar_changes_are_worded_per_column_with_repo_and_ref(tmp_path) -> None:
    stage = spec_of(tmp_path, """
        stages:
          s:
            cmd: x
            deps: [{hangar: [a, b]}, {hangar: {repo: ../other, ref: dev, columns: [a]}}]
    """).stages["s"]
    span = {"from": "a=" + "1" * 40, "to": "a=" + "2" * 40}
    reasons = {"changed deps": {"hangar:.": {"a": {**span, "modified": 1}, "b": {**span, "added": 2}},
                                "hangar:../other@dev": {"a": "new"}, "gone.txt": "removed"}}
    assert describe(reasons, stage) == (
        "changed deps: hangar columns a (1 sample modified), b (2 samples added) changed between"
        " a=11111111 and a=22222222, hangar column a of ../other@dev new, gone.txt (removed)")
    assert describe(reasons, stage, width=80) == (
        "changed deps: 2 columns (1 modified, 2 added), +2 more")
    assert describe(reasons, stage, width=100) == (
        "changed deps: 2 columns (1 modified, 2 added), column a of ../other@dev (1 new), gone.txt")
    assert describe(reasons, stage, width=30) == "changed deps (3)"


def test_reasons_fit_the_width_whole_items_first() -> None:
    reasons = {"changed params": {"params.yaml": {"train.lr": "modified", "train.epochs": "new"}},
               "upstream changed": ["ingest"]}
    full = "changed params: params.yaml: train.lr (modified), train.epochs (new); upstream changed: ingest"
    assert describe(reasons, None) == describe(reasons, None, width=len(full)) == full
    assert describe(reasons, None, width=70) == "changed params: train.lr, train.epochs; upstream changed: ingest"
    assert describe(reasons, None, width=40) == "changed params: train.lr, +2 more"
    for width in range(12, 120):
        assert len(describe(reasons, None, width=width)) <= max(width, 16)


def test_verify_compares_metrics_then_outputs() -> None:
    from hangar_pipe.core.stage_ops import compare_with_earlier

    def entry(score: float, digest: str = "h") -> dict[str, Any]:
        return {"outs": [{"path": "m.json", "hash": digest, "size": 1, "metrics": {"score": score}}]}

    assert compare_with_earlier([], entry(1.0)) == "no earlier run with the same inputs"
    assert compare_with_earlier([("r1", entry(1.0))], entry(1.0)) == "reproduced exactly"
    assert compare_with_earlier([("r1", entry(1.0))], entry(2.0)) == {"m.json:score": {"old": 1.0, "new": 2.0}}
    plain = {"outs": [{"path": "model.pt", "hash": "h1", "size": 1}]}
    other = {"outs": [{"path": "model.pt", "hash": "h2", "size": 1}]}
    assert compare_with_earlier([("r1", plain)], plain) == "reproduced exactly"
    assert compare_with_earlier([("r1", plain)], other) == {"outputs": {"old": "r1", "new": "differ"}}


def test_preflight_names_what_cannot_be_read(tmp_path) -> None:
    from hangar_pipe import Pipeline

    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent("""
        stages:
          make: {cmd: x, outs: [build]}
          use: {cmd: x, wdir: build, deps: [input.txt, ../missing.txt]}
    """))
    with pytest.raises(UserError, match=r"stages.use.deps\[1\]: dependency 'missing.txt' does not exist"):
        Pipeline.load(tmp_path).status(["use"], single=True)  # the wdir and input.txt come from `make`
    (tmp_path / "pipeline.yaml").write_text("stages:\n  use: {cmd: x, wdir: nowhere}\n")
    with pytest.raises(UserError, match="stages.use.wdir: folder 'nowhere' does not exist"):
        Pipeline.load(tmp_path).status()


def test_reasons_too_long_for_any_item_are_counted() -> None:
    long = {f"data/processed/a_rather_long_feature_file_number_{i}.parquet": "modified" for i in range(6)}
    reasons = {"changed deps": long, "changed params": {"params.yaml": {"a": "modified", "b": "new"}}}
    assert describe(reasons, None, width=46) == "changed deps (6); changed params (2)"
