"""Column fingerprints cached by (commit, column) in .hpipe/: reused, and a damaged file ignored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import Project
from hangar_repo import READER, Repo, images, labels

from hangar_pipe.hangar.fingerprints import FingerprintCache
from hangar_pipe.hangar.store import ColumnState, HangarStore


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    commit = Repo(tmp_path).write("first", labels=labels(10))
    return tmp_path, commit


def test_a_cached_fingerprint_is_read_without_the_commits_records(repo: tuple[Path, str], tmp_path: Path) -> None:
    path, commit = repo
    file = tmp_path / ".hpipe" / "hangar-fingerprints.json"
    first = HangarStore(path, FingerprintCache(file))
    state = first.column(commit, "labels")
    assert state is not None and state == HangarStore(path).column(commit, "labels")
    assert first.column(commit, "nope") is None
    first.fingerprints.save()  # type: ignore[union-attr]
    again = HangarStore(path, FingerprintCache(file))
    assert again.column(commit, "labels") == state
    assert again._flat == {}, "the commit's records were not read"
    assert isinstance(state.schema["shape"], tuple)  # the schema round-trips with its types


def test_only_a_new_entry_writes_the_file(tmp_path: Path) -> None:
    file = tmp_path / "fp.json"
    cache = FingerprintCache(file)
    assert cache.get("a=1", "x") is None
    cache.save()
    assert not file.exists()
    cache.put("a=1", "x", ColumnState("f" * 32, 3, {"shape": (1,)}))
    cache.save()
    assert FingerprintCache(file).get("a=1", "x") == ColumnState("f" * 32, 3, {"shape": (1,)})


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[1, 2]", b'{"format": 1, "entries": []}',
                                    b'{"format": 99, "entries": {}}', b"\xff\xfe",
                                    b'{"format": 1, "entries": {"a=1 x": ["f", "3", "{}"]}}',
                                    b'{"format": 1, "entries": {"a=1 x": ["f", 3, "{oops"]}}',
                                    b'{"format": 1, "entries": {"a=1 x": null}}'])
def test_a_damaged_file_is_ignored_and_rewritten(tmp_path: Path, damage: bytes) -> None:
    file = tmp_path / "fp.json"
    file.write_bytes(damage)
    cache = FingerprintCache(file)
    assert cache.get("a=1", "x") is None
    cache.put("a=2", "y", ColumnState("e" * 32, 1, {}))
    cache.save()
    assert json.loads(file.read_text())["entries"]["a=2 y"] == ["e" * 32, 1, "{}"]


def test_a_new_commit_gets_its_own_entry(repo: tuple[Path, str], tmp_path: Path) -> None:
    path, commit = repo
    newer = Repo(path).write("relabel", labels={0: np.array([9], dtype=np.int64)})
    cache = FingerprintCache(tmp_path / "fp.json")
    store = HangarStore(path, cache)
    old, new = store.column(commit, "labels"), store.column(newer, "labels")
    assert old is not None and new is not None and old.fingerprint != new.fingerprint
    assert store.column_change(commit, newer, "labels") == {"from": commit, "to": newer, "modified": 1}


def test_no_op_status_with_a_damaged_cache_file(project: Project) -> None:
    """End to end: the file is kept by `hpipe repro`, a damaged one is rewritten by `hpipe status`."""
    Repo(project.root).write("first", imgs=images(20), labels=labels(20))
    project.pipeline(READER)
    project.hpipe("repro")
    file = project.root / ".hpipe" / "hangar-fingerprints.json"
    kept = json.loads(file.read_text())["entries"]
    assert sorted(k.split()[1] for k in kept) == ["imgs", "labels"]
    file.write_bytes(b"\x00garbage")
    assert project.hpipe("status").out == "Everything is up to date.\n"
    assert json.loads(file.read_text())["entries"] == kept
    Repo(project.root).write("relabel", labels={3: np.array([7], dtype=np.int64)})
    assert project.hpipe("status").out == "• train: would run (changed deps: column labels (1 modified))\n"
