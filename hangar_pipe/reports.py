"""Metrics and params as tables: what the stages report, and how it moved.

Metrics files are the `metrics:` outputs of the stages (JSON or YAML); nested keys are
flattened to dotted names and lists (per-epoch histories) are left out. When a stage is
recorded, its metric values are stored in pipeline.lock next to the file's hash, and every
run's values go to the run history, so a diff can compare the workspace, the lock, the lock of
any git revision, and any recorded run.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import yaml

from hangar_pipe.core.history import RunRecord, Table, flat_values
from hangar_pipe.core.kinds import record_key, recorded_metrics, tag_of
from hangar_pipe.core.layout import LOCK_FILE
from hangar_pipe.core.params import Scalar
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

_RUN_ID = re.compile(r"^\d{8}-\d{6}(-[0-9a-f]{0,4})?$")


def lock_entries(pipeline: Pipeline, rev: str | None) -> dict[str, Any]:
    """The lock's stage entries: the working copy (rev None or 'lock') or a git revision's."""
    if rev in (None, "lock"):
        return pipeline.lock.entries
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["git", *args], cwd=pipeline.root, capture_output=True, text=True)
        except OSError as exc:
            raise UserError(f"cannot read {LOCK_FILE} at '{rev}': {exc.strerror}") from None

    if git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        raise UserError(f"cannot read {LOCK_FILE} at '{rev}': not a git revision here"
                        " (nor lock, workspace, a run id or data:<commit>)")
    shown = git("show", f"{rev}:./{LOCK_FILE}")
    if shown.returncode != 0:  # the revision has no lock: nothing was recorded then (as DVC)
        return {}
    data = yaml.safe_load(shown.stdout) or {}
    return data.get("stages") or {}


def locked_metrics(entries: dict[str, Any]) -> Table:
    table: Table = {}
    for entry in entries.values():
        for rec in entry.get("outs") or []:  # a git revision's lock may hold anything
            if tag_of(rec) is not None and (metrics := recorded_metrics(rec)) is not None:
                table[record_key(rec)] = metrics
    return table


def _is_run(source: str) -> bool:
    return source.startswith("data:") or bool(_RUN_ID.match(source))


def metrics_at(pipeline: Pipeline, source: str | None) -> Table:
    """'workspace' (the files now), 'lock' (recorded values), a run id or `data:<commit>` (the
    run history), or a git revision (its pipeline.lock)."""
    if source == "workspace":
        return pipeline.metrics()
    if source and _is_run(source):
        return pipeline.history.find(source).metrics
    return locked_metrics(lock_entries(pipeline, source))


def params_at(pipeline: Pipeline, source: str | None) -> Table:
    if source == "workspace":
        return pipeline.params()
    if source and _is_run(source):
        return pipeline.history.find(source).params
    table: Table = {}
    for entry in lock_entries(pipeline, source).values():
        for file, values in (entry.get("params") or {}).items():
            table.setdefault(file, {}).update(flat_values(values))
    return table


@dataclass
class Row:
    file: str
    name: str
    old: Scalar
    new: Scalar

    @property
    def change(self) -> Scalar:
        numbers = (int, float)
        if isinstance(self.old, numbers) and isinstance(self.new, numbers) and not isinstance(
                self.old, bool) and not isinstance(self.new, bool):
            return self.new - self.old
        return None

    def to_dict(self) -> dict[str, Scalar]:
        return {"file": self.file, "name": self.name, "old": self.old, "new": self.new,
                "change": self.change}


def diff(old: Table, new: Table, *, everything: bool = False) -> list[Row]:
    rows = []
    for file in sorted(old.keys() | new.keys()):
        a, b = old.get(file, {}), new.get(file, {})
        for name in sorted(a.keys() | b.keys()):
            if everything or name not in a or name not in b or a[name] != b[name]:
                rows.append(Row(file, name, a.get(name), b.get(name)))
    return rows


def key_metrics(metrics: Table, most: int = 3) -> dict[str, Scalar]:
    """A few headline numbers of a run: accuracies first, then losses (file-qualified if needed)."""
    flat = {name: value for values in metrics.values() for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
    ranked = sorted(flat, key=lambda k: (0 if "acc" in k else 1 if "loss" in k else 2, k.count("."), k))
    return {k: flat[k] for k in ranked[:most]}


def fmt(value: Scalar, precision: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{precision}g}"
    return str(value)


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)



def short(commit: str | None) -> str:
    return commit[:10] if commit else "-"


def runs_table(records: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of `hpipe runs`: when, on which data commit, what ran, exit, key metrics."""
    def what_ran(r: RunRecord) -> str:
        done = [s["name"] + (" (restored)" if s["state"] == "restored" else "")
                for s in r.stages if s["state"] in ("ran", "restored")]
        return ", ".join(done) or "-"

    rows = [[r.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)), short(r.data_commit),
             what_ran(r), str(r.status),
             ", ".join(f"{k} {fmt(v, 4)}" for k, v in key_metrics(r.metrics).items()) or "-"]
            for r in records]
    return ["run", "when", "data commit", "ran", "exit", "key metrics"], rows


def metrics_across_runs(records: list[RunRecord], precision: int) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per run, one column per numeric `file:metric`."""
    names = sorted({(f, k) for r in records for f, values in r.metrics.items() for k, v in values.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    rows = [[r.id, short(r.data_commit), *(fmt(r.metrics.get(f, {}).get(k), precision) for f, k in names)]
            for r in records]
    return ["run", "data commit", *(f"{f}:{k}" for f, k in names)], rows
