"""Params at the seam (issue 9, params forms): reading YAML, JSON and TOML files by suffix, a whole
file's values and changes, and the forms `params:` accepts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.decisions import params_changes
from hangar_pipe.core.params import ParamsDep, load_params
from hangar_pipe.core.spec import load_pipeline
from hangar_pipe.errors import UserError

WHERE = ("pipeline.yaml", 4, "stages.a.params[0]")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def params_of(tmp_path: Path, params: str) -> list[ParamsDep]:
    write(tmp_path, "pipeline.yaml", f"stages:\n  a:\n    cmd: x\n    params: {params}\n")
    return load_pipeline(tmp_path / "pipeline.yaml").stages["a"].params


def test_each_format_by_its_suffix(tmp_path: Path) -> None:
    toml = write(tmp_path, "c.toml", """
        seed = 1
        day = 2024-05-01
        [train]
        lr = 0.1
        [[layers]]
        size = 8
    """)
    assert load_params(toml, "c.toml") == {"seed": 1, "day": "2024-05-01", "train": {"lr": 0.1},
                                           "layers": [{"size": 8}]}
    assert load_params(write(tmp_path, "c.json", '{"a": {"b": 1e-3}}'), "c.json") == {"a": {"b": 0.001}}
    assert load_params(write(tmp_path, "c.yml", "a: {b: 2}\n"), "c.yml") == {"a": {"b": 2}}


@pytest.mark.parametrize(("name", "text", "error"), [
    ("c.toml", "a = 1\nb = \n", "c.toml:2: invalid TOML: Invalid value (column 5)"),
    ("c.toml", "a = [1,\n", "c.toml:2: invalid TOML: "),
    ("c.toml", b"a = '\xff'\n", "c.toml: invalid TOML: not UTF-8 text"),
    ("c.json", '{\n  "a": 1,\n}\n', "c.json:3: invalid JSON: "),
    ("c.json", b"\xff\xfe\xfd", "c.json: invalid JSON: "),
    ("c.ini", "a=1\n", "c.ini: unsupported params file type (use .yaml, .yml, .json, .toml)"),
])
def test_a_bad_file_is_one_line_with_file_and_line(tmp_path: Path, name: str, text: str | bytes,
                                                   error: str) -> None:
    with pytest.raises(UserError) as caught:
        load_params(write(tmp_path, name, text), name)
    assert str(caught.value).startswith(error) and "\n" not in str(caught.value)


def test_a_whole_file_records_its_top_level_keys(tmp_path: Path) -> None:
    write(tmp_path, "c.toml", "seed = 1\n[train]\nlr = 0.1\n")
    dep = ParamsDep("c.toml", (), (WHERE,))
    assert dep.whole and dep.measure(Workspace(tmp_path)) == {"seed": 1, "train": {"lr": 0.1}}
    write(tmp_path, "list.json", "[1, 2]")
    with pytest.raises(UserError, match=r"^pipeline.yaml:4: stages.a.params\[0\]: list.json holds list"):
        ParamsDep("list.json", (), (WHERE,)).measure(Workspace(tmp_path))


def test_a_whole_file_compares_per_leaf() -> None:
    dep = ParamsDep("p.yaml", (), (WHERE,))
    old = {"seed": 1, "train": {"lr": 0.1, "epochs": 3}, "empty": {}}
    new = {"train": {"lr": 0.2, "epochs": 3, "wd": 0}, "new": {"key": 1}, "empty": {"x": 1}}
    assert dep.compare(old, new) == {"empty.x": "new", "new.key": "new", "seed": "deleted",
                                     "train.lr": "modified", "train.wd": "new"}
    assert dep.compare(old, {**old}) == {}
    keys = ParamsDep("p.yaml", ("train",), (WHERE,))
    assert keys.compare({"train": {"lr": 0.1}}, {"train": {"lr": 0.2}}) == {"train.lr": "modified"}


def test_params_changes_compare_each_file_as_declared() -> None:
    whole, keys = ParamsDep("w.toml", (), (WHERE,)), ParamsDep("k.json", ("a",), (WHERE,))
    old = {"w.toml": {"x": 1}, "k.json": {"a": 1}, "gone.yaml": {"b": 1}}
    new = {"w.toml": {"x": 1, "y": 2}, "k.json": {"a": 2}}
    assert params_changes([whole, keys], old, new) == {
        "gone.yaml": {"b": "removed"}, "k.json": {"a": "modified"}, "w.toml": {"y": "new"}}


def test_the_forms_of_params(tmp_path: Path) -> None:
    deps = params_of(tmp_path, "[lr, {c.toml: [train.lr, seed]}, {w.json: }, {e.yml: []}]")
    assert [(d.file, d.keys, d.whole) for d in deps] == [
        ("params.yaml", ("lr",), False), ("c.toml", ("train.lr", "seed"), False),
        ("w.json", (), True), ("e.yml", (), True)]
    assert deps[2].where == (("pipeline.yaml", 4, "stages.a.params[2].w.json"),)
    merged = params_of(tmp_path, "[lr, {params.yaml: }, {params.yaml: [b]}]")
    assert [(d.file, d.keys) for d in merged] == [("params.yaml", ())], "the whole file takes in keys"


@pytest.mark.parametrize(("params", "error"), [
    ("[{conf.ini: [a]}]", "stages.a.params[0].conf.ini: params file 'conf.ini': unsupported type"
                          " (use .yaml, .yml, .json, .toml)"),
    ("[{c.toml: }, {c.toml: }]", "stages.a.params[1].c.toml: params file 'c.toml' is listed twice"),
    ("[{c.toml: a}]", "stages.a.params[0].c.toml: expected a list of keys in c.toml, or none for"
                      " the whole file"),
    ("[3]", "stages.a.params[0]: expected a key, {file: [keys]} or {file: } for a whole file"),
])
def test_bad_params_forms(tmp_path: Path, params: str, error: str) -> None:
    with pytest.raises(UserError) as caught:
        params_of(tmp_path, params)
    assert str(caught.value) == f"pipeline.yaml:4: {error}"
