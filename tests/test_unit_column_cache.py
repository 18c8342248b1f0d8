"""The column cache's files in-process: LRU eviction to a budget, in-use entries, temp files, gc."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hangar_pipe.errors import UserError
from hangar_pipe.hangar.column_cache import (
    BUDGET_ENV,
    STALE_TEMP_S,
    ColumnCache,
    Entry,
    budget_from_env,
    choose_evictions,
)


def entry(name: str, size: int, used: float) -> Entry:
    return Entry(Path(f"/c/{name}.npy"), size, used)


def names(entries: list[Entry]) -> list[str]:
    return [e.fingerprint for e in entries]


def put(cache: ColumnCache, fingerprint: str, size: int, age: float) -> Path:
    """An entry of `size` bytes last used `age` seconds ago."""
    path = cache.path(fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def listing(cache: ColumnCache) -> set[str]:
    return {p.name for p in cache.folder.iterdir()}


def test_choose_evictions_least_recently_used_first_until_it_fits() -> None:
    entries = [entry("new", 40, 3.0), entry("old", 40, 1.0), entry("mid", 40, 2.0)]
    assert names(choose_evictions(entries, 120, set())) == []
    assert names(choose_evictions(entries, 100, set())) == ["old"]
    assert names(choose_evictions(entries, 79, set())) == ["old", "mid"]
    assert names(choose_evictions(entries, 0, set())) == ["old", "mid", "new"]


def test_choose_evictions_spares_entries_in_use() -> None:
    entries = [entry("a", 50, 1.0), entry("b", 50, 2.0), entry("c", 50, 3.0)]
    assert names(choose_evictions(entries, 100, {"a"})) == ["b"]
    # what is in use stays even when it alone exceeds the budget
    assert names(choose_evictions(entries, 10, {"a", "c"})) == ["b"]
    assert names(choose_evictions([entry("a", 50, 1.0)], 10, {"a"})) == []


def test_add_evicts_to_the_budget_and_keeps_the_new_entry(tmp_path: Path) -> None:
    cache = ColumnCache(tmp_path / "columns", budget=250)
    put(cache, "old", 100, age=30)
    put(cache, "mid", 100, age=20)
    assert cache.add("new", b"n" * 100)
    assert listing(cache) == {"mid.npy", "new.npy"}
    assert cache.path("new").read_bytes() == b"n" * 100
    assert cache.add("newer", b"m" * 100, in_use={"mid"})
    assert listing(cache) == {"mid.npy", "newer.npy"}, "the in-use entry stays, the older new one goes"


def test_a_read_makes_an_entry_recent(tmp_path: Path) -> None:
    cache = ColumnCache(tmp_path, budget=250)
    put(cache, "a", 100, age=30)
    put(cache, "b", 100, age=20)
    assert cache.hit("a") == cache.path("a")
    assert cache.hit("absent") is None
    cache.add("c", b"c" * 100)
    assert listing(cache) == {"a.npy", "c.npy"}


def test_an_entry_larger_than_the_budget_is_not_written(tmp_path: Path) -> None:
    cache = ColumnCache(tmp_path, budget=50)
    put(cache, "small", 40, age=10)
    assert not cache.add("big", b"b" * 51)
    assert listing(cache) == {"small.npy"}, "nothing evicted for an entry that cannot fit"
    off = ColumnCache(tmp_path / "off", budget=0)
    assert not off.add("any", b"a") and not off.folder.exists()


def test_stale_temp_files_go_fresh_ones_and_other_files_stay(tmp_path: Path) -> None:
    cache = ColumnCache(tmp_path, budget=1000)
    stale = tmp_path / ".dead.npy.k1ll3d.tmp"
    fresh = tmp_path / ".live.npy.wr1t1n.tmp"
    other = tmp_path / "notes.txt"
    for path in (stale, fresh, other):
        path.write_bytes(b"t" * 10)
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    entries, temps = cache.scan()
    assert entries == [] and {t.path for t in temps} == {stale, fresh}
    cache.add("a", b"a")
    assert listing(cache) == {"a.npy", fresh.name, other.name}


def test_collect_removes_what_is_not_kept(tmp_path: Path) -> None:
    cache = ColumnCache(tmp_path, budget=10)  # the budget plays no part in gc
    for name in ("kept", "gone1", "gone2"):
        put(cache, name, 100, age=5)
    stale = tmp_path / ".dead.npy.k1ll3d.tmp"
    stale.write_bytes(b"t" * 7)
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    assert cache.collect({"kept", "absent"}, dry_run=True) == (3, 207)
    assert len(listing(cache)) == 4, "a dry run removes nothing"
    assert cache.collect({"kept"}) == (3, 207)
    assert listing(cache) == {"kept.npy"}
    assert ColumnCache(tmp_path / "none").collect(set()) == (0, 0)


def test_budget_setting() -> None:
    assert budget_from_env({}) == 1_000_000_000
    assert budget_from_env({BUDGET_ENV: "250"}) == 250_000_000
    assert budget_from_env({BUDGET_ENV: " 0.5 "}) == 500_000
    assert budget_from_env({BUDGET_ENV: "0"}) == 0
    for bad in ("-1", "lots", "nan", "inf"):
        with pytest.raises(UserError, match=f"{BUDGET_ENV} must be a size in MB"):
            budget_from_env({BUDGET_ENV: bad})
