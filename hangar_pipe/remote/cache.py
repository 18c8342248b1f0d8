"""Which objects `hpipe push`/`pull` move for which stages, and putting pulled outputs back.

`Pipeline.push_cache`, `Pipeline.pull_cache` and `Pipeline.remote_fetcher` (for `repro --pull`)
call these. The objects of a stage are those of the cached outputs pipeline.lock records for it
(a folder: its manifest and files); `run_cache` adds every run-cache entry and its objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar_pipe.core import layout
from hangar_pipe.core.history import History
from hangar_pipe.core.kinds import Kind, record_key
from hangar_pipe.core.mutex import ReproMutex
from hangar_pipe.core.objects import ObjectStore
from hangar_pipe.core.reporter import Reporter, SilentReporter
from hangar_pipe.core.runcache import RunCache
from hangar_pipe.remote import transfer
from hangar_pipe.remote.config import resolve
from hangar_pipe.remote.storage import Storage, open_storage
from hangar_pipe.remote.transfer import TransferStats, default_jobs

if TYPE_CHECKING:
    from hangar_pipe.pipeline import Pipeline

Record = dict[str, Any]


@dataclass(frozen=True)
class LockedOutput:
    """A cached output of a stage as pipeline.lock records it."""

    stage: str
    out: Kind
    rec: Record


def locked_outputs(pipeline: Pipeline, targets: list[str] | None) -> list[LockedOutput]:
    """The cached outputs pipeline.lock records for the stages (all by default; named stages or
    outputs select just those stages, not their upstream)."""
    found = []
    lock = pipeline.lock
    for name in pipeline.graph.select(pipeline._targets(targets), single=True):
        entry = lock.get(name) or {}
        outs = {o.key: o for o in pipeline.stages[name].outs if o.cached}
        for rec in entry.get("outs") or []:
            if isinstance(rec, dict) and "hash" in rec and (out := outs.get(record_key(rec))) is not None:
                found.append(LockedOutput(name, out, rec))
    return found


def open_remote(root: Path, remote: str | None) -> Storage:
    """The Storage of the named remote (the default one when None)."""
    return open_storage(resolve(root, remote), root)


def push_cache(pipeline: Pipeline, targets: list[str] | None = None, remote: str | None = None, *,
               run_cache: bool = False, history: bool = False, jobs: int | None = None,
               reporter: Reporter | None = None) -> TransferStats:
    """Upload the stages' output objects (and with `run_cache` every run-cache entry and its
    objects) that the remote lacks."""
    reporter = reporter or SilentReporter()
    storage = open_remote(pipeline.root, remote)
    jobs = jobs or default_jobs(storage.parallel)
    store = ObjectStore(layout.cache_dir(pipeline.root), reporter)
    stats = TransferStats(storage.name)
    outputs = locked_outputs(pipeline, targets)
    recs = [o.rec for o in outputs]
    if run_cache:
        runs = RunCache(layout.run_cache_db(pipeline.root), reporter.warning)
        recs += transfer.push_entries(runs, storage, jobs=jobs, reporter=reporter, stats=stats)
    if history:
        from hangar_pipe.remote.history import push_history

        push_history(pipeline.history, storage, jobs=jobs, reporter=reporter, stats=stats)
    labels = {o.rec["hash"] + (".dir" if "nfiles" in o.rec else ""): str(o.rec.get("path", o.stage))
              for o in outputs}
    names = store.names(recs)
    names |= {r["hash"] + ".dir" for r in recs if "hash" in r and "nfiles" in r}  # (counted absent if missing)
    transfer.push_objects(store, storage, names, jobs=jobs, reporter=reporter, stats=stats, labels=labels)
    return stats


def pull_cache(pipeline: Pipeline, targets: list[str] | None = None, remote: str | None = None, *,
               run_cache: bool = False, history: bool = False, jobs: int | None = None,
               reporter: Reporter | None = None, restore: bool = True, check: bool = True) -> TransferStats:
    """Download the objects of the stages' locked outputs (with `run_cache`, also the remote's
    run-cache entries and their objects), then put back the outputs missing from the workspace (a
    modified one is left alone, with a warning). Raises TransferError at the end if a remote object
    was corrupted (the rest is pulled and restored)."""
    reporter = reporter or SilentReporter()
    storage = open_remote(pipeline.root, remote)
    jobs = jobs or default_jobs(storage.parallel)
    store = ObjectStore(layout.cache_dir(pipeline.root), reporter)
    stats = TransferStats(storage.name)
    outputs = locked_outputs(pipeline, targets)
    recs = [(str(o.rec.get("path", o.stage)), o.rec) for o in outputs]
    if run_cache:
        runs = RunCache(layout.run_cache_db(pipeline.root), reporter.warning)
        transfer.pull_entries(runs, storage, storage.list_entries(), jobs=jobs, reporter=reporter, stats=stats)
        recs += [(f"run {run_id}", rec) for _, _, run_id, e in runs.rows() for rec in e.get("outs") or []
                 if isinstance(rec, dict) and "hash" in rec]
    if history:
        from hangar_pipe.remote.history import pull_history

        pull_history(History(layout.history_db(pipeline.root), reporter.warning), storage, jobs=jobs,
                     reporter=reporter, stats=stats)
    transfer.pull_records(store, storage, recs, jobs=jobs, reporter=reporter, stats=stats)
    if restore:
        restore_outputs(pipeline, store, outputs, reporter, stats)
    if check:
        stats.check()
    return stats


def restore_outputs(pipeline: Pipeline, store: ObjectStore, outputs: list[LockedOutput],
                    reporter: Reporter, stats: TransferStats) -> None:
    """Put back each locked output that the workspace lacks, from verified objects; one that is
    there but differs from the lock is the user's work: left alone, with a warning."""
    with ReproMutex(layout.repro_mutex(pipeline.root)), pipeline.workspace() as ws:
        for o in outputs:
            path = o.out.file(ws)
            if path is None:
                continue
            if os.path.lexists(path):
                now = o.out.measure(ws)
                if now is None or now.get("hash") != o.rec["hash"]:
                    reporter.warning(f"'{o.out.key}' differs from pipeline.lock; left alone"
                                     " (`hpipe repro` brings it up to date)")
                    stats.kept.append(o.out.key)
                continue
            if store.restore(path, o.rec, o.stage, ws.root):  # (False when an object is missing)
                stats.restored.append(o.out.key)


@dataclass
class RemoteFetcher:
    """`repro --pull`: run-cache entries and objects fetched from a remote when a stage needs them
    (the `core.context.Fetcher` protocol)."""

    storage: Storage
    store: ObjectStore
    run_cache: RunCache
    reporter: Reporter
    jobs: int = field(default_factory=default_jobs)
    stats: TransferStats | None = None
    _have: set[str] | None = None

    def __post_init__(self) -> None:
        self.stats = self.stats or TransferStats(self.storage.name)

    def entries(self, key: str) -> list[tuple[str, Record]]:
        """The remote's results for a run key that the local run cache lacked (now added to it)."""
        assert self.stats is not None
        rels = self.storage.list_entries_of(key)
        return transfer.pull_entries(self.run_cache, self.storage, rels, jobs=self.jobs,
                                     reporter=self.reporter, stats=self.stats)

    def objects(self, recs: list[Record]) -> bool:
        """Fetch (hash-checked) the objects these output records need; whether all are here now."""
        assert self.stats is not None
        if self._have is None:  # one listing per run
            self._have = self.storage.list_objects()
        labelled = [(str(r.get("path", "")), r) for r in recs if "hash" in r]
        transfer.pull_records(self.store, self.storage, labelled, jobs=self.jobs, reporter=self.reporter,
                              stats=self.stats, have=self._have)
        return all(self.store.can_restore(r) for _, r in labelled)


def remote_fetcher(pipeline: Pipeline, remote: str | None = None, reporter: Reporter | None = None,
                   jobs: int | None = None) -> RemoteFetcher:
    """A fetcher for `RunContext.fetcher` (repro --pull)."""
    reporter = reporter or SilentReporter()
    storage = open_remote(pipeline.root, remote)
    return RemoteFetcher(storage, ObjectStore(layout.cache_dir(pipeline.root), reporter),
                         RunCache(layout.run_cache_db(pipeline.root), reporter.warning), reporter,
                         jobs or default_jobs(storage.parallel))


def missing_here(pipeline: Pipeline, stages: list[str]) -> list[LockedOutput]:
    """The stages' locked outputs that neither the workspace nor the local cache has."""
    store = ObjectStore(layout.cache_dir(pipeline.root))
    with pipeline.workspace() as ws:
        return [o for o in locked_outputs(pipeline, stages)
                if (path := o.out.file(ws)) is not None and not os.path.lexists(path)
                and not store.can_restore(o.rec)]


def on_remote(pipeline: Pipeline, outputs: list[LockedOutput]) -> tuple[str, dict[str, list[str]]] | None:
    """(remote name, {stage: [output keys]}) of those outputs the default remote holds; None when no
    remote is configured or it cannot be read (status never fails for a remote)."""
    from hangar_pipe.errors import UserError

    try:
        storage = open_remote(pipeline.root, None)
        have = storage.list_objects()
    except (UserError, OSError):
        return None
    found: dict[str, list[str]] = {}
    for o in outputs:
        if o.rec["hash"] + (".dir" if "nfiles" in o.rec else "") in have:
            found.setdefault(o.stage, []).append(o.out.key)
    return storage.name, found
