"""The stage graph in-process: edges through files, folders and Hangar columns; selection; bad graphs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_unit_decisions import spec_of

from hangar_pipe.core.graph import Graph
from hangar_pipe.errors import UserError


@pytest.fixture
def graph(tmp_path: Path) -> Graph:
    return Graph.build(spec_of(tmp_path, """
        stages:
          raw: {cmd: x, outs: [data]}
          clean: {cmd: x, deps: [data/raw.csv], outs: [clean/a.csv, clean/b.csv]}
          feats: {cmd: x, deps: [clean], outs: [{hangar: [feats]}]}
          train: {cmd: x, deps: [{hangar: [feats, labels]}], outs: [model]}
          report: {cmd: x, deps: [model, clean/a.csv], outs: [report.md]}
          lonely: {cmd: x, outs: [z]}
    """))


def test_edges_follow_files_folders_and_columns(graph: Graph) -> None:
    assert graph.upstream == {"raw": set(), "clean": {"raw"}, "feats": {"clean"}, "train": {"feats"},
                              "report": {"train", "clean"}, "lonely": set()}
    assert graph.producers_of_path("data/raw.csv") == {"raw"}  # inside an output folder
    assert graph.producers_of_path("clean") == {"clean"}  # a folder holding outputs


def test_select(graph: Graph) -> None:
    assert graph.select() == ["raw", "lonely", "clean", "feats", "train", "report"]
    assert graph.select(["train"]) == ["raw", "clean", "feats", "train"]
    assert graph.select(["train"], single=True) == ["train"]
    assert graph.select(["feats"], downstream=True) == ["feats", "train", "report"]
    with pytest.raises(UserError, match="unknown stage 'trian' \\(did you mean 'train'\\?\\)"):
        graph.select(["trian"])


@pytest.mark.parametrize(("stages", "message"), [
    ("a: {cmd: x, outs: [o]}\n  b: {cmd: x, outs: [o]}", "stages 'a' and 'b' both declare output 'o'"),
    ("a: {cmd: x, outs: [d]}\n  b: {cmd: x, outs: [d/x]}", "output 'd/x' of stage 'b' is inside output 'd'"),
    ("a: {cmd: x, deps: [b], outs: [a]}\n  b: {cmd: x, deps: [a], outs: [b]}", "pipeline has a cycle"),
])
def test_bad_graphs_are_one_line_errors(tmp_path: Path, stages: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", "\\(")) as err:
        Graph.build(spec_of(tmp_path, "stages:\n  " + stages + "\n"))
    assert str(err.value).startswith("pipeline.yaml:")
