"""The run cache: a stage's run key -> the lock entry its run produced, in `.hpipe/cache/run-cache.db`.

The run key is what determines a stage's result: its definition, each dep's identity (a
kind says what of its record counts: a file's hash, a Hangar column's fingerprint) and its
params values. Sizes, commits and refs are left out, so the same columns at another commit
give the same key. A stage whose key ran before is restored from the output cache.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import xxhash

from hangar_pipe.core.decisions import Measured
from hangar_pipe.core.spec import Stage
from hangar_pipe.core.sqlitefile import SqliteFile, Warn

Record = dict[str, Any]
_SCHEMA = ("CREATE TABLE IF NOT EXISTS runs (key TEXT, created REAL, run_id TEXT, entry TEXT)",
           "CREATE INDEX IF NOT EXISTS runs_key ON runs (key)")


def run_material(stage: Stage, measured: Measured) -> dict[str, Any]:
    """What the run key hashes: the definition, each dep's identity, the params values. A built-in
    stage gets it as HPIPE_STAGE_INPUTS (the map stage keys its own state on part of it)."""
    items = {d.key: d for d in stage.deps}
    deps = {k: None if rec is None else items[k].identity(rec) for k, rec in sorted(measured.deps.items())}
    return {"definition": stage.definition(), "deps": deps, "params": measured.params}


def run_key(stage: Stage, measured: Measured) -> str:
    material = run_material(stage, measured)
    return xxhash.xxh3_128_hexdigest(json.dumps(material, sort_keys=True, default=str).encode())


class RunCache:
    def __init__(self, path: Path, warn: Warn | None = None) -> None:
        self.path = path
        self.db = SqliteFile(path, "run cache", _SCHEMA, warn)
        legacy = path.with_name("runs.db")  # its earlier name, beside the objects
        if legacy.exists() and not path.exists():
            try:  # a hot journal (left by a crash) moves first, so SQLite still rolls it back
                for suffix in ("-journal", ""):
                    if (old := legacy.with_name(legacy.name + suffix)).exists():
                        old.rename(path.with_name(path.name + suffix))
            except FileNotFoundError:  # another hpipe renamed it first
                pass

    def put(self, key: str, run_id: str, entry: Record, created: float | None = None) -> None:
        """Store a result (`created`: when it was made, for one pulled from a remote; now by default)."""
        def insert(db: sqlite3.Connection) -> None:
            with db:
                db.execute("DELETE FROM runs WHERE key = ? AND entry = ?", (key, json.dumps(entry)))
                db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                           (key, time.time() if created is None else created, run_id, json.dumps(entry)))
        self.db.use(insert)

    def all(self) -> list[tuple[str, str, Record]]:
        """(key, run id, entry) of every stored result."""
        if not self.path.exists():
            return []
        rows = self.db.use(lambda db: db.execute("SELECT key, run_id, entry FROM runs").fetchall())
        return [(k, r, json.loads(e)) for k, r, e in rows]

    def rows(self) -> list[tuple[str, float, str, Record]]:
        """(key, created, run id, entry) of every stored result (what a remote copies)."""
        if not self.path.exists():
            return []
        rows = self.db.use(lambda db: db.execute("SELECT key, created, run_id, entry FROM runs").fetchall())
        return [(k, c, r, json.loads(e)) for k, c, r, e in rows]

    def drop_runs_except(self, run_ids: set[str], dry_run: bool) -> int:
        """Forget results of runs not in run_ids; how many."""
        entries = self.all()
        doomed = [r for _, r, _ in entries if r not in run_ids]
        if doomed and not dry_run:
            def delete(db: sqlite3.Connection) -> None:
                with db:
                    db.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in set(doomed)])
            self.db.use(delete)
        return len(doomed)

    def candidates(self, key: str) -> list[tuple[str, Record]]:
        """(run id, lock entry) results stored under a key, newest first."""
        if not self.path.exists():
            return []
        rows = self.db.use(lambda db: db.execute(
            "SELECT run_id, entry FROM runs WHERE key = ? ORDER BY created DESC", (key,)).fetchall())
        return [(run_id, json.loads(entry)) for run_id, entry in rows]
