"""Run history: one record per `hpipe repro`, appended to `.hpipe/runs.db` (SQLite, one transaction).

A record holds the run id, start and end times, hpipe's exit status, the data commit of every
Hangar repo and ref the run read, each stage's state, reasons and duration, and the params and
metrics values at the end of the run. Failed and interrupted runs are recorded too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from hangar_pipe.core.params import Scalar, leaves, read_metrics
from hangar_pipe.core.sqlitefile import SqliteFile, Warn
from hangar_pipe.errors import UserError

if TYPE_CHECKING:
    from hangar_pipe.core.context import Workspace
    from hangar_pipe.core.spec import Stage

Table = dict[str, dict[str, Scalar]]  # file -> {dotted name: value}
_SCHEMA = ("CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, started REAL, ended REAL,"
           " status INTEGER, data_commit TEXT, record TEXT)",)


@dataclass
class RunRecord:
    """One run in `.hpipe/runs.db`: when, how it ended, the data commits read, each stage's
    result, and the params and metrics at its end."""

    id: str
    started: float
    ended: float
    status: int  # hpipe's exit code: 0 ok, 1 a stage failed, 130 interrupted
    data: dict[str, str]  # "repo@ref" -> commit read
    data_commit: str | None  # the commit of data.repo (at data.ref or --data-commit)
    stages: list[dict[str, Any]] = field(default_factory=list)
    params: Table = field(default_factory=dict)
    metrics: Table = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # `repro --tag`; exp run: experiment, point, overrides
    outputs: dict[str, str] = field(default_factory=dict)  # cached output -> its hash at the end (plots --runs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ran(self) -> list[str]:
        return [s["name"] for s in self.stages if s["state"] == "ran"]

    @property
    def noop(self) -> bool:
        """Nothing ran, was restored or failed."""
        return self.status == 0 and all(s["state"] not in ("ran", "restored", "failed", "interrupted")
                                        for s in self.stages)


def new_run_id(started: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    return f"{stamp}-{xxhash.xxh32_hexdigest(f'{started}{os.getpid()}'.encode())[:4]}"


def current_metrics(stages: Iterable[Stage], ws: Workspace) -> Table:
    """Every stage's metrics files as they are now, flattened."""
    files = [(o.key, o.file(ws)) for stage in stages for o in stage.outs if o.role == "metric"]
    return {key: read_metrics(path) for key, path in files if path is not None and path.exists()}


def flat_values(values: dict[str, Any]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for key, value in values.items():
        out.update({k: json.dumps(v) if isinstance(v, list) else v
                    for k, v in leaves(value, key).items()})
    return out


def current_params(stages: Iterable[Stage], ws: Workspace) -> Table:
    """Every stage's params values as they are now, flattened per leaf."""
    table: Table = {}
    for stage in stages:
        for dep in stage.params:
            if (ws.root / dep.file).is_file():  # a deleted params file has no values now
                table.setdefault(dep.file, {}).update(flat_values(dep.measure(ws)))
    return table


class History:
    def __init__(self, path: Path, warn: Warn | None = None) -> None:
        self.path = path
        self.db = SqliteFile(path, "run history", _SCHEMA, warn)

    def append(self, record: RunRecord) -> None:
        """Add a run, whole or not at all."""
        def insert(db: sqlite3.Connection) -> None:
            with db:
                db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                           (record.id, record.started, record.ended, record.status,
                            record.data_commit, json.dumps(record.to_dict(), default=str)))
        self.db.use(insert)

    def merge(self, records: list[RunRecord]) -> int:
        """Add runs recorded elsewhere (`hpipe pull --history`), skipping ids already here; how many."""
        def insert(db: sqlite3.Connection) -> int:
            with db:
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                               [(r.id, r.started, r.ended, r.status, r.data_commit,
                                 json.dumps(r.to_dict(), default=str)) for r in records])
                return int(db.total_changes - before)
        return int(self.db.use(insert)) if records else 0

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[RunRecord]:
        if not self.path.exists():
            return []
        rows = self.db.use(lambda db: db.execute(sql, args).fetchall())
        return [RunRecord(**json.loads(row[0])) for row in rows]

    def since(self, started: float) -> list[RunRecord]:
        """The runs started at or after `started` (seconds since the epoch), newest first."""
        return self._query("SELECT record FROM runs WHERE started >= ? ORDER BY started DESC", (started,))

    def latest(self, n: int | None = None) -> list[RunRecord]:
        """The newest runs first."""
        limit = "" if n is None else f" LIMIT {int(n)}"
        return self._query(f"SELECT record FROM runs ORDER BY started DESC{limit}")

    def find(self, ref: str) -> RunRecord:
        """A run by id (or a unique prefix), or `data:<commit>`: the latest run on that data commit."""
        if ref.startswith("data:"):
            commit = ref[len("data:"):]
            digest = commit if commit.startswith("a=") else f"a={commit}"
            found = self._query("SELECT record FROM runs WHERE data_commit LIKE ? ORDER BY started DESC",
                                (digest + "%",))
            if not found:
                raise UserError(f"no recorded run read data commit '{commit}' (see hpipe runs)")
            return found[0]
        found = self._query("SELECT record FROM runs WHERE id LIKE ? ORDER BY started DESC", (ref + "%",))
        if not found:
            raise UserError(f"no run with id '{ref}' (see hpipe runs)")
        if len(found) > 1:
            listed = ", ".join(r.id for r in found[:5]) + (", …" if len(found) > 5 else "")
            raise UserError(f"run id '{ref}' is ambiguous: {len(found)} runs start with it ({listed})")
        return found[0]
