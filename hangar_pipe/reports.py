"""Metrics and params as tables: what the stages report, and how it moved.

Metrics files are the `metrics:` outputs of the stages (JSON or YAML); nested keys are
flattened to dotted names and lists (per-epoch histories) are left out. When a stage is
recorded, its metric values are stored in pipeline.lock next to the file's hash, so a diff
can compare the workspace with the lock, or with the lock of any git revision.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hangar_pipe.deps import PathOut, Scalar, leaves, read_metrics
from hangar_pipe.errors import UserError
from hangar_pipe.lock import LOCK_FILE
from hangar_pipe.pipeline import Pipeline
from hangar_pipe.yamlfile import load_data

Table = dict[str, dict[str, Scalar]]  # file -> {dotted name: value}


def metric_outs(pipeline: Pipeline) -> list[tuple[str, PathOut]]:
    return [(name, out) for name, stage in pipeline.stages.items() for out in stage.outs
            if isinstance(out, PathOut) and out.role == "metric"]


def workspace_metrics(pipeline: Pipeline) -> Table:
    return {out.path: read_metrics(pipeline.root / out.path)
            for _, out in metric_outs(pipeline) if (pipeline.root / out.path).exists()}


def lock_entries(pipeline: Pipeline, rev: str | None) -> dict[str, Any]:
    """The lock's stage entries: the working copy (rev None or 'lock') or a git revision's."""
    if rev in (None, "lock"):
        return pipeline.lock.entries
    try:
        text = subprocess.run(["git", "show", f"{rev}:./{LOCK_FILE}"], cwd=pipeline.root,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise UserError(f"cannot read {LOCK_FILE} at '{rev}': {detail.strip().splitlines()[-1:]}") from None
    data = yaml.safe_load(text) or {}
    return data.get("stages") or {}


def locked_metrics(entries: dict[str, Any]) -> Table:
    table: Table = {}
    for entry in entries.values():
        for rec in entry.get("outs") or []:
            if "metrics" in rec:
                table[rec["path"]] = rec["metrics"]
    return table


def metrics_at(pipeline: Pipeline, source: str | None) -> Table:
    """'workspace' (the files now), 'lock' (recorded values) or a git revision's lock."""
    if source == "workspace":
        return workspace_metrics(pipeline)
    return locked_metrics(lock_entries(pipeline, source))


def params_now(pipeline: Pipeline) -> Table:
    table: Table = {}
    for stage in pipeline.stages.values():
        for dep in stage.params:
            values = dep.measure(pipeline.ctx)
            table.setdefault(dep.file, {}).update(_flat_values(values))
    return table


def params_at(pipeline: Pipeline, source: str | None) -> Table:
    if source == "workspace":
        return params_now(pipeline)
    table: Table = {}
    for entry in lock_entries(pipeline, source).values():
        for file, values in (entry.get("params") or {}).items():
            table.setdefault(file, {}).update(_flat_values(values))
    return table


def _flat_values(values: dict[str, Any]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for key, value in values.items():
        out.update({k: json.dumps(v) if isinstance(v, list) else v
                    for k, v in leaves(value, key).items()})
    return out


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


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

