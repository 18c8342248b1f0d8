"""The fast paths under push and pull, in-process: copying (reflink or kernel copy, hashing on the
way), a full disk that raises, object names without paths, batched parallel transfers, and which
folders count as network ones."""

from __future__ import annotations

import errno
import os
import resource
import signal
import threading
from pathlib import Path

import pytest

from hangar_pipe.core import workers
from hangar_pipe.core.fingerprint import CHUNK, copy_hashed, fingerprint_path, hash_file
from hangar_pipe.core.objects import ObjectStore, Progress, clone_or_copy
from hangar_pipe.core.reporter import SilentReporter
from hangar_pipe.errors import TransferError
from hangar_pipe.remote.storage import network_folder
from hangar_pipe.remote.transfer import Moved, default_jobs, run_all


@pytest.mark.parametrize("size", [0, 1, 1500, CHUNK + 12345])
def test_copies_are_exact_and_hashed_like_hash_file(tmp_path: Path, size: int) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(size))
    assert clone_or_copy(src, tmp_path / "a") == size
    assert (tmp_path / "a").read_bytes() == src.read_bytes()
    assert clone_or_copy(src, str(tmp_path / "b")) == size  # again: the device pair is remembered
    assert (tmp_path / "b").read_bytes() == src.read_bytes()
    assert copy_hashed(src, tmp_path / "c") == (size, hash_file(src))
    assert (tmp_path / "c").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("copy", [clone_or_copy, copy_hashed])
def test_a_full_disk_raises_instead_of_a_short_copy(tmp_path: Path, copy: object) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 << 20))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(OSError) as info:
            copy(src, tmp_path / "dst")  # type: ignore[operator]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert info.value.errno == errno.EFBIG


def test_object_names_match_the_referenced_files(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        (folder / "sub" / f"{i}.txt").write_text(f"file {i}")
    (tmp_path / "f.txt").write_text("one")
    recs = []
    for path in (folder, tmp_path / "f.txt"):
        fp = fingerprint_path(str(path))
        assert fp is not None
        rec = {"path": path.name, **fp.record()}
        store.save(path, rec)
        recs.append(rec)
    names = store.names(recs)
    assert {os.path.relpath(p, store.folder).replace(os.sep, "") for p in store.referenced(recs)} == names
    assert len(names) == 1 + 5 + 1 and recs[0]["hash"] + ".dir" in names
    assert all(os.path.isfile(store.location(n)) for n in names)


@pytest.mark.parametrize("jobs", [1, 3])
def test_run_all_does_each_item_once_in_batches(jobs: int) -> None:
    items = list(range(1000))
    threads: set[str] = set()

    def work(i: int) -> Moved:
        threads.add(threading.current_thread().name)
        return Moved(i)

    progress = Progress(SilentReporter(), "", "moving", len(items))
    done = run_all(items, work, jobs, progress)
    assert sorted(i for i, _ in done) == items and all(m.size == i for i, m in done)
    assert progress.done == len(items)
    assert (threads == {threading.current_thread().name}) == (jobs == 1)  # one job: no pool at all


def test_run_all_raises_the_first_error_and_stops() -> None:
    started: list[int] = []

    def work(i: int) -> Moved:
        started.append(i)
        if i == 5:
            raise OSError(errno.EIO, "boom")
        return Moved()

    with pytest.raises(OSError, match="boom"):
        run_all(list(range(10_000)), work, 2, Progress(SilentReporter(), "", "moving", 10_000))
    assert len(started) < 10_000  # the batches not started were cancelled


MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
server:/export /mnt/team nfs4 rw,relatime 0 0
/dev/vdb1 /mnt/team/local ext4 rw 0 0
//nas/share /mnt/my\\040share cifs rw 0 0
"""


def test_network_folders_are_told_by_their_mount() -> None:
    assert network_folder(Path("/mnt/team/remote"), MOUNTS)
    assert network_folder(Path("/mnt/team"), MOUNTS)
    assert not network_folder(Path("/mnt/team/local/remote"), MOUNTS)  # the longest mount point wins
    assert not network_folder(Path("/mnt/teamwork"), MOUNTS)  # (a prefix of the name is not inside)
    assert network_folder(Path("/mnt/my share/x"), MOUNTS)
    assert not network_folder(Path("/home/me/remote"), MOUNTS)
    cores = os.cpu_count() or 1
    assert default_jobs(parallel=False) == min(8, cores) and default_jobs(parallel=True) == min(32, 4 * cores)


def test_forked_workers_do_each_item_once_and_report_progress(tmp_path: Path) -> None:
    items = [f"{i:04d}" for i in range(1000)]
    seen: list[int] = []

    def work(item: str) -> Moved:
        (tmp_path / item).write_text(str(os.getpid()))
        return Moved(int(item))

    done = workers.run_forked(items, work, 2, seen.append)
    assert sorted(done) == [(item, Moved(int(item))) for item in items] and sum(seen) == len(items)
    pids = {(tmp_path / item).read_text() for item in items}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two children did the work


def test_a_failing_worker_lets_the_others_finish_then_raises(tmp_path: Path) -> None:
    items = list(range(600))

    def work(i: int) -> Moved:
        if i == 301:  # in the second child's share (odd items)
            raise TransferError("remote 'origin': boom")
        (tmp_path / str(i)).touch()
        return Moved(i)

    with pytest.raises(TransferError, match="boom"):
        workers.run_forked(items, work, 2, lambda n: None)
    written = {int(p.name) for p in tmp_path.iterdir()}
    assert set(range(0, 600, 2)) <= written  # the first child finished its share
    assert 301 not in written and max(i for i in written if i % 2) == 299  # the second stopped there


def test_how_many_workers_and_no_fork_next_to_other_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not workers.can_fork() and workers.worth_forking(10_000, 4) == 0
    finally:
        stop.set()
        thread.join()
    assert workers.can_fork() == (threading.active_count() == 1)  # (a test runner may hold threads)
    monkeypatch.setattr(workers, "can_fork", lambda: True)  # the counting, wherever this runs
    assert workers.worth_forking(1000, 2) == 2 and workers.worth_forking(100, 2) == 0
    assert workers.worth_forking(1000, 1) == 0 and workers.worth_forking(300, 8) == 2


def test_a_big_folder_restores_exactly_through_workers_where_it_can_fork(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    folder = tmp_path / "big"
    for i in range(workers.FORK_MIN + 50):
        sub = folder / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i}.bin").write_bytes(os.urandom(i % 700))
    fp = fingerprint_path(str(folder))
    assert fp is not None
    rec = {"path": "big", **fp.record()}
    store.save(folder, rec)
    target = tmp_path / "restored" / "big"
    assert store.restore(target, rec)
    assert fingerprint_path(str(target)) == fp
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == sorted(
        p.relative_to(folder) for p in folder.rglob("*"))
