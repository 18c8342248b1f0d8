"""`hpipe push --history` / `pull --history`: run-history records shared through the cache remote,
one immutable JSON file per run (`<url>/runs/<run id>.json`), so `hpipe runs` on another machine
lists the runs made here."""

from __future__ import annotations

import json
import re
from dataclasses import fields

from hangar_pipe.core.history import History, RunRecord
from hangar_pipe.core.objects import Progress
from hangar_pipe.core.reporter import Reporter
from hangar_pipe.remote.storage import Storage
from hangar_pipe.remote.transfer import Moved, TransferStats, run_all

_FIELDS = {f.name for f in fields(RunRecord)}
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # (a file name: no folders, no hidden files)


def push_history(history: History, storage: Storage, *, jobs: int, reporter: Reporter,
                 stats: TransferStats) -> None:
    """Upload every local run record the remote lacks."""
    records = {r.id: r for r in history.latest()}
    todo = sorted(set(records) - storage.list_runs())
    stats.runs_present += len(records) - len(todo)

    def one(run_id: str) -> Moved:
        data = json.dumps(records[run_id].to_dict(), sort_keys=True, default=str).encode()
        storage.put_run(run_id, data)
        return Moved(len(data))

    stats.runs += len(run_all(todo, one, jobs, Progress(reporter, "", "pushing run history", len(todo))))


def pull_history(history: History, storage: Storage, *, jobs: int, reporter: Reporter,
                 stats: TransferStats) -> None:
    """Download the remote's run records this history lacks and add them; a damaged one is warned
    about and skipped."""
    here = {r.id for r in history.latest()}
    remote = {run_id for run_id in storage.list_runs() if _RUN_ID.match(run_id)}
    todo = sorted(remote - here)
    stats.runs_present += len(remote) - len(todo)
    got: dict[str, bytes] = {}

    def one(run_id: str) -> Moved:
        got[run_id] = storage.get_run(run_id)
        return Moved(len(got[run_id]))

    run_all(todo, one, jobs, Progress(reporter, "", "pulling run history", len(todo)))
    records = []
    for run_id in todo:
        record = _parse(run_id, got[run_id])
        if record is None:
            reporter.warning(f"run record {run_id} in remote '{storage.name}' is damaged; not used")
            continue
        records.append(record)
    stats.runs += history.merge(records)


def _parse(run_id: str, data: bytes) -> RunRecord | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc.get("id") != run_id:
        return None
    try:
        return RunRecord(**doc)
    except TypeError:
        return None
