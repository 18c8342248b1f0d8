"""Why a stage would run, as plain data.

`stage_reasons` compares what a stage is now (its definition and measured inputs and
outputs) with its lock entry and returns every reason that holds, e.g.
`{"changed params": {"params.yaml": {"train.lr": "modified"}}}`. An empty dict means
up to date. `hpipe status`, `--json`, `--dry-run` and the decision to run all read it.

Words used per item: new (not in the lock), removed (in the lock, no longer declared),
deleted (declared and recorded, now missing), modified (content or value differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hangar_pipe.deps import Context, Kind, Record, compare_values, record_key
from hangar_pipe.spec import Stage

DEFINITION_FIELDS = ("cmd", "uses", "with", "wdir")


@dataclass
class Measured:
    """A stage's inputs as they are now: dep records by key (None if missing), params by file."""

    deps: dict[str, Record | None] = field(default_factory=dict)
    params: dict[str, Record] = field(default_factory=dict)


def measure_deps(stage: Stage, ctx: Context) -> Measured:
    return Measured({d.key: d.measure(ctx) for d in stage.deps},
                    {p.file: p.measure(ctx) for p in stage.params})


def measure_outs(stage: Stage, ctx: Context) -> dict[str, Record | None]:
    return {o.key: o.measure(ctx) for o in stage.outs}


def _compare_records(items: list[Kind], locked: list[Record], current: dict[str, Record | None],
                     ctx: Context) -> dict[str, Any]:
    old_by_key = {record_key(r): r for r in locked}
    out: dict[str, Any] = {}
    for item in items:
        old, new = old_by_key.get(item.key), current.get(item.key)
        if old is None:
            out[item.key] = "new"
        elif new is None:
            out[item.key] = "deleted"
        elif change := item.changes(old, new, ctx):
            out[item.key] = change
    for key in old_by_key.keys() - current.keys():
        out[key] = "removed"
    return out


def stage_reasons(stage: Stage, entry: dict[str, Any] | None, deps: Measured,
                  outs: dict[str, Record | None], ctx: Context, *, forced: bool = False
                  ) -> dict[str, Any]:
    reasons: dict[str, Any] = {}
    if forced:
        reasons["forced"] = True
    if stage.always_changed:
        reasons["always changed"] = True
    if entry is None:
        reasons["no lock entry"] = True
        return reasons
    definition = stage.definition()
    changed_def: dict[str, Any] = {}
    for f in DEFINITION_FIELDS:
        old, new = entry.get(f), definition.get(f)
        if old != new:
            if isinstance(old, dict) and isinstance(new, dict):
                changed_def[f] = compare_values(old, new)
            else:
                changed_def[f] = "modified"
    if changed_def:
        reasons["changed definition"] = changed_def
    if changed := _compare_records(stage.deps, entry.get("deps") or [], deps.deps, ctx):
        reasons["changed deps"] = changed
    old_params: dict[str, Record] = entry.get("params") or {}
    params: dict[str, Any] = {}
    for file in sorted(old_params.keys() | deps.params.keys()):
        if per_key := compare_values(old_params.get(file) or {}, deps.params.get(file) or {}):
            params[file] = per_key
    if params:
        reasons["changed params"] = params
    if changed := _compare_records(stage.outs, entry.get("outs") or [], outs, ctx):
        reasons["changed outs"] = changed
    return reasons


def lock_entry(stage: Stage, deps: Measured, outs: dict[str, Record | None]) -> dict[str, Any]:
    """The lock entry of a stage that just ran: definition, dep records, param values, out records."""
    entry = stage.definition()
    if recs := [deps.deps[k] for k in sorted(deps.deps) if deps.deps[k] is not None]:
        entry["deps"] = recs
    if deps.params:
        entry["params"] = {f: deps.params[f] for f in sorted(deps.params)}
    if recs := [outs[k] for k in sorted(outs) if outs[k] is not None]:
        entry["outs"] = recs
    return entry


def describe(reasons: dict[str, Any]) -> str:
    """One line of text for a reasons dict, for the CLI."""
    parts: list[str] = []
    for reason, detail in reasons.items():
        if detail is True:
            parts.append(reason)
        elif isinstance(detail, list):
            parts.append(f"{reason}: {', '.join(detail)}")
        else:
            parts.append(f"{reason}: {_describe_items(detail)}")
    return "; ".join(parts)


def _describe_items(detail: dict[str, Any]) -> str:
    items = []
    for key, value in detail.items():
        if key.startswith("hangar:") and isinstance(value, dict):  # in data terms, per column
            repo = key[len("hangar:"):]
            where = "" if repo == "." else f" of {repo}"
            items += [f"hangar column {col}{where} {change}" for col, change in value.items()]
        elif isinstance(value, dict):
            items.append(f"{key}: {_describe_items(value)}")
        else:
            items.append(f"{key} ({value})")
    return ", ".join(items)
