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
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

from hangar_pipe.core.history import RunRecord, Table, flat_values
from hangar_pipe.core.kinds import record_key, recorded_metrics, tag_of
from hangar_pipe.core.layout import LOCK_FILE
from hangar_pipe.core.params import Scalar
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

_RUN_ID = re.compile(r"^\d{8}-\d{2,6}(-[0-9a-f]{0,4})?$")  # a run id or its prefix (date, hour at least)


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


def fmt(value: Scalar, precision: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{precision}g}"
    return str(value)


def exact(value: Scalar) -> str:
    """A value in full, for --csv: every digit of a float, '' for none."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Column:
    """One column of a report table, in full (`name`, `full`: --csv, --md) and as a terminal
    shows it (`short`, `brief`). `rank` 0 is the last to leave a narrow table; `compact`, where
    given, is a narrower form of `brief` (counts instead of names) tried before leaving it out."""

    name: str
    short: str
    full: list[str]
    brief: list[str]
    rank: int
    number: bool = False
    compact: list[str] | None = None


MetricKey = tuple[str, str]  # (metrics file, dotted name)


def _numeric(value: Scalar) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_keys(tables: list[Table]) -> list[MetricKey]:
    """Every numeric metric in the runs' metrics tables, headline first: accuracies, then
    losses, then the rest; shallower names first."""
    keys = {(f, k) for table in tables for f, values in table.items() for k, v in values.items()
            if _numeric(v)}
    def rank(key: MetricKey) -> tuple[int, int, str, str]:
        name = key[1].lower()
        return (0 if "acc" in name else 1 if "loss" in name else 2, name.count("."), name, key[0])
    return sorted(keys, key=rank)


def short_metric_names(keys: list[MetricKey]) -> dict[MetricKey, str]:
    """Readable headers: the name alone where no other file has it, else `stem:name` (the
    file's name without folder and extension), else `file:name`."""
    files_of: dict[str, set[str]] = {}
    for f, k in keys:
        files_of.setdefault(k, set()).add(f)
    names = {}
    for f, k in keys:
        stems = [PurePosixPath(other).stem for other in files_of[k]]
        if len(stems) == 1:
            names[(f, k)] = k
        elif stems.count(PurePosixPath(f).stem) == 1:
            names[(f, k)] = f"{PurePosixPath(f).stem}:{k}"
        else:
            names[(f, k)] = f"{f}:{k}"
    return names


def run_prefixes(ids: list[str], every: list[str], length: int = 15) -> list[str]:
    """Each run id's date-and-time prefix, or the whole id where another run shares that prefix."""
    counts: dict[str, int] = {}
    for other in every:
        counts[other[:length]] = counts.get(other[:length], 0) + 1
    return [i[:length] if counts.get(i[:length], 0) <= 1 else i for i in ids]


def short(commit: str | None) -> str:
    return commit[:10] if commit else "-"


def _metric_column(records: list[RunRecord], key: MetricKey, header: str, precision: int,
                   rank: int) -> Column:
    values = [r.metrics.get(key[0], {}).get(key[1]) for r in records]
    return Column(f"{key[0]}:{key[1]}", header, [exact(v) for v in values],
                  [fmt(v, precision) for v in values], rank, number=True)


def _id_columns(records: list[RunRecord], every: list[str]) -> list[Column]:
    ids = [r.id for r in records]
    commits = [r.data_commit for r in records]
    return [Column("run", "run", ids, run_prefixes(ids, every), 0),
            Column("data_commit", "data commit", [exact(c) for c in commits], [short(c) for c in commits], 1)]


def metrics_columns(records: list[RunRecord], every: list[str], precision: int) -> list[Column]:
    """`hpipe metrics show --runs`: run, data commit and one column per numeric metric, headline
    first. `every`: the ids of all recorded runs (a shown id prefix must be unique among them)."""
    keys = metric_keys([r.metrics for r in records])
    names = short_metric_names(keys)
    return _id_columns(records, every) + [_metric_column(records, key, names[key], precision, 2 + i)
                                          for i, key in enumerate(keys)]


_DONE = {"ran": "", "restored": " (restored)", "failed": " (failed)", "interrupted": " (interrupted)"}


def what_ran(r: RunRecord) -> str:
    """`train, evaluate (restored)`: the stages the run ran, restored, or that failed in it."""
    return ", ".join(s["name"] + _DONE[s["state"]] for s in r.stages if s["state"] in _DONE)


def ran_counts(r: RunRecord) -> str:
    """`2 ran, 1 restored`: what_ran as counts."""
    counts = [(sum(s["state"] == state for s in r.stages), state) for state in _DONE]
    return ", ".join(f"{n} {state}" for n, state in counts if n)


def _took(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


_HEADLINE_RANKS = (2, 4, 6)  # the first metric ranks just after the data commit, the third after `when`


def run_columns(records: list[RunRecord], every: list[str], precision: int) -> list[Column]:
    """`hpipe runs`: run, when, data commit, three headline metrics, what ran, exit, time taken.
    `every`: the ids of all recorded runs (a shown id prefix must be unique among them)."""
    keys = metric_keys([r.metrics for r in records])
    names = short_metric_names(keys)
    stamps = [datetime.fromtimestamp(r.started).astimezone() for r in records]
    seconds = [max(r.ended - r.started, 0.0) for r in records]
    metrics = [_metric_column(records, key, names[key], precision, rank)
               for key, rank in zip(keys, _HEADLINE_RANKS)]
    run, data = _id_columns(records, every)
    ran = [what_ran(r) for r in records]
    return [run, Column("started", "when", [t.isoformat(timespec="seconds") for t in stamps],
                        [t.strftime("%b %d %H:%M") for t in stamps], 5),
            data, *metrics,
            Column("ran", "ran", ran, [text or "-" for text in ran], 3,
                   compact=[ran_counts(r) or "-" for r in records]),
            Column("exit", "exit", [str(r.status) for r in records], [str(r.status) for r in records], 7),
            Column("seconds", "took", [f"{s:.3f}" for s in seconds], [_took(s) for s in seconds], 8,
                   number=True)]
