"""The kept YAML parses (core/parsed.py, used by core/yamlfile.py): the same bytes, the same
result without parsing; other bytes, a damaged entry or a result marshal cannot hold, a parse."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from hangar_pipe.core import yamlfile
from hangar_pipe.core.parsed import MISS, ParsedCache
from hangar_pipe.errors import UserError


def test_an_entry_answers_only_for_the_bytes_it_was_parsed_from(tmp_path: Path) -> None:
    cache = ParsedCache(tmp_path, tmp_path / ".hpipe" / "parsed")
    assert cache.get("a.yaml", "doc", b"x: 1\n") is MISS
    cache.put("a.yaml", "doc", b"x: 1\n", ({"x": 1}, {("x",): 1}))
    assert cache.get("a.yaml", "doc", b"x: 1\n") == ({"x": 1}, {("x",): 1})
    assert cache.get("a.yaml", "doc", b"x: 2\n") is MISS  # edited: parsed again
    assert cache.get("a.yaml", "data", b"x: 1\n") is MISS  # another kind of read
    assert cache.get("b.yaml", "doc", b"x: 1\n") is MISS  # another file


def test_a_damaged_entry_is_a_miss_and_an_unmarshallable_result_is_not_kept(tmp_path: Path) -> None:
    cache = ParsedCache(tmp_path, tmp_path / ".hpipe" / "parsed")
    cache.put("a.yaml", "doc", b"x: 1\n", {"x": 1})
    (entry,) = (tmp_path / ".hpipe" / "parsed").iterdir()
    entry.write_bytes(b"\x00garbage")
    assert cache.get("a.yaml", "doc", b"x: 1\n") is MISS
    cache.put("d.yaml", "data", b"d: 2020-01-01\n", {"d": datetime.date(2020, 1, 1)})
    assert cache.get("d.yaml", "data", b"d: 2020-01-01\n") is MISS
    assert not list((tmp_path / ".hpipe" / "parsed").glob("*.tmp"))


def test_a_folder_that_cannot_be_written_costs_only_the_next_parse(tmp_path: Path) -> None:
    (tmp_path / ".hpipe").mkdir()
    (tmp_path / ".hpipe" / "parsed").write_text("a file where the folder belongs")
    cache = ParsedCache(tmp_path, tmp_path / ".hpipe" / "parsed")
    cache.put("a.yaml", "doc", b"x: 1\n", {"x": 1})  # no error
    assert cache.get("a.yaml", "doc", b"x: 1\n") is MISS
    gone = ParsedCache(tmp_path / "deleted", tmp_path / "deleted" / ".hpipe" / "parsed")
    gone.put("a.yaml", "doc", b"x: 1\n", {"x": 1})
    assert not (tmp_path / "deleted").exists()  # a project that is gone is not made again


def test_only_files_inside_the_project_are_kept(tmp_path: Path) -> None:
    cache = ParsedCache(tmp_path / "p", tmp_path / "p" / ".hpipe" / "parsed")
    assert cache.holds(tmp_path / "p" / "params.yaml") and cache.holds(tmp_path / "p" / "sub" / "x.yaml")
    assert not cache.holds(tmp_path / "other" / "params.yaml")
    assert not cache.holds(tmp_path / "p" / ".hpipe" / "x.yaml")


@pytest.fixture
def kept(tmp_path: Path):
    yamlfile.use_cache(tmp_path, tmp_path / ".hpipe" / "parsed")
    yield tmp_path
    yamlfile.use_cache(None)


def test_yaml_reads_go_through_the_cache_and_see_every_edit(kept: Path) -> None:
    path = kept / "params.yaml"
    path.write_text("train:\n  lr: 0.1\n")
    first = yamlfile.load_yaml(path, "params.yaml")
    assert first.data == {"train": {"lr": 0.1}} and first.line(("train", "lr")) == 2
    again = yamlfile.load_yaml(path, "params.yaml")
    assert again.data == first.data and again.lines == first.lines and again.data is not first.data
    assert yamlfile.load_data(path) == {"train": {"lr": 0.1}}
    path.write_text("train:\n  lr: 0.2\n")
    assert yamlfile.load_data(path) == {"train": {"lr": 0.2}}
    assert yamlfile.load_yaml(path, "params.yaml").data == {"train": {"lr": 0.2}}


def test_bytes_that_fail_a_guard_are_never_kept(kept: Path) -> None:
    path = kept / "dup.yaml"
    path.write_text("a: 1\na: 2\n")
    for _ in range(2):
        with pytest.raises(UserError, match="duplicate key"):
            yamlfile.load_data(path)
    assert yamlfile.load_data(path, unique_keys=False) == {"a": 2}  # that read allows it
    with pytest.raises(UserError, match="duplicate key"):
        yamlfile.load_data(path)
