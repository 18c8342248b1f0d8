"""The object store and the run cache in-process: add, restore, corruption, gc, the database's old name,
and symbolic links (never followed out of the project)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from hangar_pipe.core.files import outside_link
from hangar_pipe.core.fingerprint import fingerprint_path
from hangar_pipe.core.objects import ObjectStore
from hangar_pipe.core.runcache import RunCache
from hangar_pipe.errors import UserError


class Warnings:
    stage_output = None

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, message: str) -> None:
        self.messages.append(message)

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


def record(path: Path) -> dict[str, Any]:
    fp = fingerprint_path(str(path))
    assert fp is not None
    return {"path": path.name, **fp.record()}


def test_file_and_folder_round_trip(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    (tmp_path / "f.txt").write_text("one")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_text("a")
    (tmp_path / "d" / "sub" / "b").write_text("b")
    f, d = record(tmp_path / "f.txt"), record(tmp_path / "d")
    store.save(tmp_path / "f.txt", f)
    store.save(tmp_path / "d", d)
    obj = store.path(f["hash"])
    assert obj.read_text() == "one"
    assert obj.stat().st_mode & 0o777 == 0o444, "objects are read-only"
    (tmp_path / "f.txt").write_text("changed in place")
    assert obj.read_text() == "one", "editing the workspace file does not touch the cache"
    (tmp_path / "d" / "extra").write_text("not in the recorded folder")
    assert store.can_restore(f) and store.can_restore(d)
    assert store.restore(tmp_path / "f.txt", f) and store.restore(tmp_path / "d", d)
    assert (tmp_path / "f.txt").read_text() == "one"
    assert sorted(p.name for p in (tmp_path / "d").rglob("*")) == ["a", "b", "sub"]
    assert record(tmp_path / "d") == d


def test_a_corrupted_object_is_removed_and_not_restored(tmp_path: Path) -> None:
    reporter = Warnings()
    store = ObjectStore(tmp_path / "cache", reporter)  # type: ignore[arg-type]
    (tmp_path / "f.txt").write_text("good")
    f = record(tmp_path / "f.txt")
    store.save(tmp_path / "f.txt", f)
    obj = store.path(f["hash"])
    obj.chmod(0o644)
    obj.write_text("evil")
    (tmp_path / "f.txt").unlink()
    assert not store.restore(tmp_path / "f.txt", f)
    assert not obj.exists() and not (tmp_path / "f.txt").exists()
    assert reporter.messages == [f"cache object {f['hash']} is corrupted; removed, the stage runs"]


def test_collect_keeps_only_referenced_objects(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    recs = []
    for name in ("keep", "drop"):
        (tmp_path / name).write_text(name)
        recs.append(record(tmp_path / name))
        store.save(tmp_path / name, recs[-1])
    keep = store.referenced([recs[0], {"hangar": ".", "columns": {}}])  # records without a hash: ignored
    assert store.collect(keep, dry_run=True) == (1, 4)
    assert store.path(recs[1]["hash"]).exists()
    assert store.collect(keep, dry_run=False) == (1, 4)
    assert store.path(recs[0]["hash"]).exists() and not store.path(recs[1]["hash"]).exists()


def test_run_cache_newest_first_and_its_old_file_name(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = RunCache(cache / "runs.db")  # where earlier versions kept it
    old.put("k", "run-1", {"cmd": "a"})
    (cache / "runs.db-journal").write_bytes(b"")  # as a crash mid-transaction would leave it
    runs = RunCache(cache / "run-cache.db")
    assert not (cache / "runs.db").exists(), "moved to its new name"
    assert (cache / "run-cache.db-journal").exists(), "with its journal, so SQLite can still roll back"
    (cache / "run-cache.db-journal").unlink()
    runs.put("k", "run-2", {"cmd": "b"})
    runs.put("k", "run-3", {"cmd": "a"})  # the same result again replaces the older row
    assert runs.candidates("k") == [("run-3", {"cmd": "a"}), ("run-2", {"cmd": "b"})]
    assert runs.drop_runs_except({"run-3"}, dry_run=False) == 1
    assert [r for _, r, _ in runs.all()] == ["run-3"]


def test_long_folder_copies_report_progress(tmp_path: Path, monkeypatch) -> None:
    import itertools

    from hangar_pipe.core import objects

    clock = itertools.count(0.0, 0.3)  # every call to the clock is 0.3 s later
    monkeypatch.setattr(objects.time, "monotonic", lambda: next(clock))
    events: list[tuple[Any, ...]] = []

    class Progress(Warnings):
        def progress(self, *args: Any) -> None:
            events.append(args)

    store = ObjectStore(tmp_path / "cache", Progress())  # type: ignore[arg-type]
    for i in range(5):
        (tmp_path / "d" / f"{i}").parent.mkdir(exist_ok=True)
        (tmp_path / "d" / f"{i}").write_text(str(i))
    store.save(tmp_path / "d", record(tmp_path / "d"), "prepare")
    assert events and events[-1] == ("prepare", "caching d", 5, 5)
    assert len(events) < 5, "not one event per file"


def test_a_run_id_prefix_must_name_one_run(tmp_path: Path) -> None:
    import pytest

    from hangar_pipe.core.history import History, RunRecord
    from hangar_pipe.errors import UserError

    history = History(tmp_path / "runs.db")
    for i, rid in enumerate(("20261128-100000-aaaa", "20261128-100000-aabb", "20261128-110000-cccc")):
        history.append(RunRecord(id=rid, started=float(i), ended=float(i), status=0, data={}, data_commit=None))
    assert history.find("20261128-11").id == "20261128-110000-cccc"
    with pytest.raises(UserError, match=r"run id '20261128-100000-aa' is ambiguous: 2 runs start with it"
                                        r" \(20261128-100000-aabb, 20261128-100000-aaaa\)"):
        history.find("20261128-100000-aa")
    with pytest.raises(UserError, match="no run with id 'x'"):
        history.find("x")


def outside_file(tmp_path: Path, text: str) -> Path:
    """A private (0600) file outside the store's project."""
    (tmp_path / "outside").mkdir(exist_ok=True)
    secret = tmp_path / "outside" / "secret"
    secret.write_text(text)
    secret.chmod(0o600)
    return secret


def test_a_linked_object_is_corrupt_even_with_the_right_bytes(tmp_path: Path) -> None:
    reporter = Warnings()
    store = ObjectStore(tmp_path / "project/.hpipe/cache", reporter)  # type: ignore[arg-type]
    (tmp_path / "f.txt").write_text("good")
    f = record(tmp_path / "f.txt")
    store.save(tmp_path / "f.txt", f)
    obj = store.path(f["hash"])
    obj.unlink()
    obj.symlink_to(secret := outside_file(tmp_path, "good"))  # the same bytes, through a link
    assert store.can_restore(f)
    assert not store.restore(tmp_path / "f.txt", f)
    assert not obj.is_symlink() and not obj.exists(), "the link itself is removed"
    assert secret.read_text() == "good" and secret.stat().st_mode & 0o777 == 0o600
    assert reporter.messages == [f"cache object {f['hash']} is a symbolic link;"
                                 " removed (never followed), the stage runs"]
    store.save(tmp_path / "f.txt", f)
    assert obj.is_file() and not obj.is_symlink() and obj.read_text() == "good"


def test_collect_removes_links_without_following_them(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "project/.hpipe/cache")
    (tmp_path / "f.txt").write_text("kept")
    f = record(tmp_path / "f.txt")
    store.save(tmp_path / "f.txt", f)
    obj = store.path(f["hash"])
    obj.unlink()
    obj.symlink_to(secret := outside_file(tmp_path, "private"))
    (store.folder / "zz").symlink_to(secret.parent)  # a linked folder is not walked into
    keep = store.referenced([f])
    assert store.collect(keep, dry_run=False) == (2, 0), "even a referenced object's link goes"
    assert not obj.is_symlink() and not (store.folder / "zz").is_symlink()
    assert secret.read_text() == "private" and secret.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in secret.parent.iterdir()) == ["secret"]


def test_restore_replaces_a_link_and_refuses_a_folder_linked_outside(tmp_path: Path) -> None:
    root = tmp_path / "project"
    store = ObjectStore(root / ".hpipe/cache")
    (root / "d").mkdir(parents=True)
    (root / "d" / "a").write_text("a")
    (root / "f.txt").write_text("one")
    d, f = record(root / "d"), record(root / "f.txt")
    store.save(root / "d", d)
    store.save(root / "f.txt", f)
    secret = outside_file(tmp_path, "private")
    for name in ("d", "f.txt"):  # the output itself a link out: the link is replaced
        target = root / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.symlink_to(secret.parent if name == "d" else secret)
    assert store.restore(root / "d", d, root=root) and store.restore(root / "f.txt", f, root=root)
    assert not (root / "d").is_symlink() and (root / "d" / "a").read_text() == "a"
    assert not (root / "f.txt").is_symlink() and (root / "f.txt").read_text() == "one"
    (root / "ldir").symlink_to(secret.parent)  # its folder a link out: refused, nothing written
    with pytest.raises(UserError, match="outside the project"):
        store.restore(root / "ldir" / "f.txt", f, root=root)
    assert sorted(p.name for p in secret.parent.iterdir()) == ["secret"]
    assert secret.read_text() == "private" and secret.stat().st_mode & 0o777 == 0o600


def test_outside_link_names_the_link_that_leads_out(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (root / "real" / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "in").symlink_to(root / "real")
    (root / "real" / "out").symlink_to(elsewhere)
    assert outside_link(root, ".") is None and outside_link(root, "real/sub") is None
    assert outside_link(root, "in/sub") is None and outside_link(root, "not/made/yet") is None
    assert outside_link(root, "in/out/x") == f"'in/out' is a symbolic link to {elsewhere}"
    assert outside_link(root, "real/out") == f"'real/out' is a symbolic link to {elsewhere}"


def test_short_run_id_prefixes_are_runs_not_git_revisions() -> None:
    from hangar_pipe.reports import _is_run

    assert _is_run("20261128-15") and _is_run("20261128-1502") and _is_run("20261128-150201-ab")
    assert not _is_run("HEAD~1") and not _is_run("main") and not _is_run("20261128")
