"""Moving cache objects and run-cache entries between the local cache and a remote `Storage`.

Each direction lists what the other side has once, then moves only what it lacks, in parallel
(a thread pool of `jobs`). A pulled object is downloaded to a temp file inside the local cache
folder, hash-checked (a folder manifest must rebuild its folder's hash) and only then renamed into
place: a corrupted remote object is reported and never used, and a full disk leaves nothing
half-written. A pushed object is checked first too, so a damaged local object never reaches the
remote. Objects are immutable and content-addressed, so two pushes at once cannot conflict.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import xxhash

from hangar_pipe.core import workers
from hangar_pipe.core.fingerprint import folder_hash, hash_file
from hangar_pipe.core.objects import ObjectStore, Progress
from hangar_pipe.core.reporter import Reporter
from hangar_pipe.core.runcache import RunCache
from hangar_pipe.errors import TransferError
from hangar_pipe.remote.storage import DISK_FULL, Storage

Record = dict[str, Any]
T = TypeVar("T")
_NAME = re.compile(r"[0-9a-f]{32}(\.dir)?\Z")
_ENTRY = re.compile(r"([0-9a-f]{32})/([0-9a-f]{32})\.json\Z")


def default_jobs(parallel: bool = True) -> int:
    """Parallel transfers: to a network remote 4 per core (they wait on the network more than on
    the CPU), at most 32; to a folder on a local disk one worker process per core, at most 8
    (threads would only contend for the GIL: see `workers`)."""
    cores = os.cpu_count() or 1
    return min(32, 4 * cores) if parallel else min(8, cores)


@dataclass
class TransferStats:
    """What a push or pull did."""

    remote: str
    moved: int = 0  # objects transferred
    bytes: int = 0
    present: int = 0  # objects the other side had already
    absent: list[str] = field(default_factory=list)  # wanted, but the sending side lacks them
    corrupted: list[str] = field(default_factory=list)  # `<name> (<output>)`, not used
    entries: int = 0  # run-cache entries transferred
    entries_present: int = 0
    runs: int = 0  # run-history records transferred (`--history`)
    runs_present: int = 0
    restored: list[str] = field(default_factory=list)  # workspace outputs put back (pull)
    kept: list[str] = field(default_factory=list)  # modified workspace outputs left alone (pull)
    cleaned: int = 0  # temp files of killed pushes removed from a folder remote (push)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """A TransferError (exit 1) naming the corrupted remote objects, once the rest is done."""
        if self.corrupted:
            shown = ", ".join(self.corrupted[:3]) + (f" and {len(self.corrupted) - 3} more"
                                                     if len(self.corrupted) > 3 else "")
            raise TransferError(f"{len(self.corrupted)} corrupted object(s) in remote '{self.remote}' were"
                                f" not used: {shown}; push them again from a machine that has them")


@dataclass(frozen=True)
class Moved:
    """One item's outcome: `size` bytes moved; or absent on the sending side; or corrupted. A `note`
    is a warning for the reporter (the work may run in a worker process, which reports nothing)."""

    size: int = 0
    absent: bool = False
    corrupted: bool = False
    note: str = ""


def intact(store: ObjectStore, path: Path | str, name: str) -> bool:
    """Whether a file holds the object `name`: its hash, or for a manifest its folder's hash."""
    if name.endswith(".dir"):
        manifest = store.read_manifest(path)
        return manifest is not None and folder_hash(manifest) == name[:-4]
    return hash_file(path) == name


def run_all(items: list[T], work: Callable[[T], Moved], jobs: int, progress: Progress, *,
            local: bool = False) -> list[tuple[T, Moved]]:
    """`work` on every item: in order with one job; with more, in a pool of `jobs` threads taking
    small batches, or for file work on a local disk (`local`) in forked worker processes (where
    this process may fork and there are enough items to pay for it; else in order). The first
    error (after the running items finish, so each cleans up after itself) stops the rest and is
    raised."""
    if local and (procs := workers.worth_forking(len(items), jobs)):
        return workers.run_forked(items, work, procs, progress.advance)
    if jobs <= 1 or len(items) <= 1 or local:
        done = []
        for item in items:
            done.append((item, work(item)))
            progress.advance()
        return done
    size = max(1, min(64, len(items) // (4 * jobs)))
    batches = [items[i:i + size] for i in range(0, len(items), size)]

    def batch(part: list[T]) -> list[tuple[T, Moved]]:
        return [(item, work(item)) for item in part]

    out: list[tuple[T, Moved]] = []
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(batches)), thread_name_prefix="hpipe-transfer")
    try:
        for fut in as_completed([pool.submit(batch, part) for part in batches]):
            got = fut.result()
            out += got
            progress.advance(len(got))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _tally(stats: TransferStats, done: list[tuple[str, Moved]], labels: dict[str, str],
           reporter: Reporter) -> None:
    for name, moved in sorted(done):
        if moved.note:
            reporter.warning(moved.note)
        label = f"{name} ({labels[name]})" if name in labels else name
        if moved.absent:
            stats.absent.append(label)
        elif moved.corrupted:
            stats.corrupted.append(label)
        else:
            stats.moved += 1
            stats.bytes += moved.size


# -- objects ---------------------------------------------------------------------------------

def push_objects(store: ObjectStore, storage: Storage, names: Iterable[str], *, jobs: int,
                 reporter: Reporter, stats: TransferStats, labels: dict[str, str] | None = None) -> None:
    """Upload the named local objects that the remote lacks (a damaged local one is skipped)."""
    wanted = set(names)
    have = storage.list_objects()
    todo = sorted(wanted - have)
    stats.present += len(wanted) - len(todo)

    def one(name: str) -> Moved:
        src = store.location(name)
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            return Moved(absent=True)
        if not stat.S_ISREG(st.st_mode):  # (a link in an object's place is never followed)
            return Moved(absent=True)
        manifest = name.endswith(".dir")
        try:  # a file object is checked on its way (a manifest first: it rebuilds its folder's hash)
            sent = (not manifest or intact(store, src, name)) and storage.put_object(
                src, name, None if manifest else name)
        except OSError as exc:  # the remote's disk (a folder remote) is full
            raise TransferError(f"remote '{storage.name}' ({storage.url}) is full: {exc.strerror};"
                                " nothing half-written was kept there") from None
        if not sent:
            return Moved(absent=True, note=f"cache object {name} is corrupted here; not pushed")
        return Moved(st.st_size)

    # a folder's manifest goes last, once its files are there: a push stopped half-way never leaves
    # a manifest that makes the folder look complete on the remote
    progress = Progress(reporter, "", f"pushing to '{storage.name}'", len(todo))
    for part in ([n for n in todo if not n.endswith(".dir")], [n for n in todo if n.endswith(".dir")]):
        _tally(stats, run_all(part, one, jobs, progress, local=storage.local), labels or {}, reporter)
    stats.cleaned += storage.remove_stale()


def fetch_objects(store: ObjectStore, storage: Storage, names: Iterable[str], *, jobs: int,
                  reporter: Reporter, stats: TransferStats, have: set[str],
                  labels: dict[str, str] | None = None) -> None:
    """Download the named objects missing locally (`have`: the remote's listing), each one checked."""
    wanted = set(names)
    todo = sorted(n for n in wanted if not _is_file(store.location(n)))
    stats.present += len(wanted) - len(todo)
    here = [n for n in todo if n in have]
    labels = labels or {}
    stats.absent += [f"{n} ({labels[n]})" if n in labels else n for n in todo if n not in have]
    made: set[str] = set()  # cache folders known to exist

    def one(name: str) -> Moved:
        return _fetch_one(store, storage, name, made)

    progress = Progress(reporter, "", f"pulling from '{storage.name}'", len(here))
    done = run_all(here, one, jobs, progress, local=storage.local)
    for name, moved in done:  # (a worker process's store is not this one)
        if not (moved.absent or moved.corrupted):
            store.mark_intact(name)
    _tally(stats, done, labels, reporter)


def _fetch_one(store: ObjectStore, storage: Storage, name: str, made: set[str]) -> Moved:
    """Download to a temp file beside the object, check it, then rename it into place."""
    target = store.location(name)
    folder = os.path.dirname(target)
    tmp = os.path.join(folder, f".tmp-pull-{os.urandom(8).hex()}")
    placed = False
    try:
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        size, digest = storage.get_object(name, tmp)
        if not (digest == name if digest is not None and valid_name(name) and not name.endswith(".dir")
                else intact(store, tmp, name)):
            return Moved(corrupted=True, note=f"object {name} in remote '{storage.name}' is corrupted (its"
                                              " content does not match its hash); not used")
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
        placed = True
        return Moved(size)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise TransferError(f"disk full pulling into {store.folder} ({exc.strerror}); nothing half-written"
                            " was kept: free some space and rerun to resume") from None
    finally:
        if not placed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def pull_records(store: ObjectStore, storage: Storage, recs: list[tuple[str, Record]], *, jobs: int,
                 reporter: Reporter, stats: TransferStats, have: set[str] | None = None) -> None:
    """Fetch the objects of output records (label, record): files and folder manifests first, then
    the files the manifests list."""
    have = storage.list_objects() if have is None else have
    labels: dict[str, str] = {}
    for label, rec in recs:
        labels[rec["hash"] + (".dir" if "nfiles" in rec else "")] = label
    fetch_objects(store, storage, list(labels), jobs=jobs, reporter=reporter, stats=stats, have=have,
                  labels=labels)
    inner: dict[str, str] = {}
    for label, rec in recs:
        if "nfiles" in rec and (manifest := _local_manifest(store, rec["hash"])) is not None:
            inner.update({digest: f"{label}/{rel}" for rel, digest in manifest})
    fetch_objects(store, storage, list(inner), jobs=jobs, reporter=reporter, stats=stats, have=have,
                  labels=inner)


def _local_manifest(store: ObjectStore, digest: str) -> list[tuple[str, str]] | None:
    path = store.location(digest + ".dir")
    return store.read_manifest(path) if _is_file(path) else None


def _is_file(path: Path | str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


# -- run-cache entries -----------------------------------------------------------------------

def entry_blob(key: str, created: float, run_id: str, entry: Record) -> tuple[str, bytes]:
    """A run-cache entry as the remote stores it: (`<key>/<xxh3 of the JSON>.json`, the JSON)."""
    data = json.dumps({"key": key, "run_id": run_id, "created": created, "entry": entry},
                      sort_keys=True, separators=(",", ":")).encode()
    return f"{key}/{xxhash.xxh3_128_hexdigest(data)}.json", data


def push_entries(run_cache: RunCache, storage: Storage, *, jobs: int, reporter: Reporter,
                 stats: TransferStats) -> list[Record]:
    """Upload every local run-cache entry the remote lacks; the output records of all local entries."""
    rows = run_cache.rows()
    blobs = dict(entry_blob(k, c, r, e) for k, c, r, e in rows)
    have = storage.list_entries()
    todo = sorted(set(blobs) - have)
    stats.entries_present += len(blobs) - len(todo)

    def one(rel: str) -> Moved:
        storage.put_entry(rel, blobs[rel])
        return Moved(len(blobs[rel]))

    stats.entries += len(run_all(todo, one, jobs, Progress(reporter, "", "pushing run-cache entries", len(todo))))
    return [rec for _, _, _, e in rows for rec in e.get("outs") or [] if isinstance(rec, dict)]


def pull_entries(run_cache: RunCache, storage: Storage, rels: set[str], *, jobs: int, reporter: Reporter,
                 stats: TransferStats) -> list[tuple[str, Record]]:
    """Download the remote entries (`rels`) the local run cache lacks and store them; a damaged one
    is warned about and skipped. The (run id, entry) of each new one."""
    local = {entry_blob(k, c, r, e)[0] for k, c, r, e in run_cache.rows()}
    todo = sorted(rel for rel in rels - local if _ENTRY.match(rel))
    stats.entries_present += len(rels) - len(todo)
    got: dict[str, bytes] = {}

    def one(rel: str) -> Moved:
        got[rel] = storage.get_entry(rel)
        return Moved(len(got[rel]))

    run_all(todo, one, jobs, Progress(reporter, "", "pulling run-cache entries", len(todo)))
    new: list[tuple[str, Record]] = []
    for rel in todo:
        parsed = _parse_entry(rel, got[rel])
        if parsed is None:
            reporter.warning(f"run-cache entry {rel} in remote '{storage.name}' is corrupted; not used")
            stats.corrupted.append(f"runcache/{rel}")
            continue
        key, created, run_id, entry = parsed
        run_cache.put(key, run_id, entry, created)
        new.append((run_id, entry))
        stats.entries += 1
    return new


def _parse_entry(rel: str, data: bytes) -> tuple[str, float, str, Record] | None:
    """(key, created, run id, entry) of a downloaded entry; None unless it matches its name."""
    match = _ENTRY.match(rel)
    if match is None or xxhash.xxh3_128_hexdigest(data) != match.group(2):
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not (isinstance(doc, dict) and doc.get("key") == match.group(1) and isinstance(doc.get("run_id"), str)
            and isinstance(doc.get("created"), (int, float)) and isinstance(doc.get("entry"), dict)):
        return None
    return doc["key"], float(doc["created"]), doc["run_id"], doc["entry"]


def valid_name(name: str) -> bool:
    return _NAME.match(name) is not None
