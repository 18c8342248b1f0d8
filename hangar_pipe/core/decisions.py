"""Why a stage would run, as plain data: pure functions over a stage, its lock entry and its measurements.

`stage_reasons` compares what a stage is now (its definition and measured inputs and outputs)
with its lock entry and returns every reason that holds, e.g.
`{"changed params": {"params.yaml": {"train.lr": "modified"}}}`. An empty dict means up to
date. `hpipe status`, `--json`, `--dry-run` and the decision to run all read it.

Words used per item: new (not in the lock), removed (in the lock, no longer declared),
deleted (declared and recorded, now missing), modified (content or value differs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.kinds import Kind, Record, describe_change, record_key
from hangar_pipe.core.params import ParamsDep, compare_values
from hangar_pipe.core.spec import Stage

DEFINITION_FIELDS = ("cmd", "uses", "with", "wdir")
#: the reason of a stage that redoes only the samples that changed: {added, modified, removed,
#: since: the data commit it last processed}
SAMPLES_CHANGED = "samples changed"
Reasons = dict[str, Any]


@dataclass
class Measured:
    """A stage's inputs as they are now: dep records by key (None if missing), params by file."""

    deps: dict[str, Record | None] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


def measure_deps(stage: Stage, ws: Workspace) -> Measured:
    return Measured({d.key: d.measure(ws) for d in stage.deps},
                    {p.file: p.measure(ws) for p in stage.params})


def measure_outs(stage: Stage, ws: Workspace) -> dict[str, Record | None]:
    return {o.key: o.measure(ws) for o in stage.outs}


def compare_records(items: Sequence[Kind], locked: list[Record],
                    current: dict[str, Record | None], ws: Workspace) -> dict[str, Any]:
    """Per item key: new, deleted, removed, or the kind's own account of the change."""
    old_by_key = {record_key(r): r for r in locked}
    out: dict[str, Any] = {}
    for item in items:
        old, new = old_by_key.get(item.key), current.get(item.key)
        if old is None:
            out[item.key] = "new"
        elif new is None:
            out[item.key] = "deleted"
        elif change := item.changes(old, new, ws):
            out[item.key] = change
    for key in old_by_key.keys() - current.keys():
        out[key] = "removed"
    return out


def definition_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for f in DEFINITION_FIELDS:
        a, b = old.get(f), new.get(f)
        if a != b:
            changed[f] = compare_values(a, b) if isinstance(a, dict) and isinstance(b, dict) else "modified"
    return changed


def params_changes(params: Sequence[ParamsDep], old: dict[str, dict[str, Any]],
                   new: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per params file, per key: each declared file compares as it is declared (keys or whole);
    a file no longer declared has its keys removed."""
    declared = {p.file: p for p in params}
    changed: dict[str, Any] = {}
    for file in sorted(old.keys() | new.keys()):
        before, now = old.get(file) or {}, new.get(file) or {}
        dep = declared.get(file)
        if per_key := dep.compare(before, now) if dep else compare_values(before, now):
            changed[file] = per_key
    return changed


def stage_reasons(stage: Stage, entry: dict[str, Any] | None, deps: Measured,
                  outs: dict[str, Record | None], ws: Workspace, *, forced: bool = False) -> Reasons:
    """Every reason the stage would run for; {} when it is up to date."""
    reasons: Reasons = {}
    if forced:
        reasons["forced"] = True
    if stage.always_changed:
        reasons["always changed"] = True
    if entry is None:
        reasons["no lock entry"] = True
        return reasons
    if changed := definition_changes(entry, stage.definition()):
        reasons["changed definition"] = changed
    if changed := compare_records(stage.deps, entry.get("deps") or [], deps.deps, ws):
        reasons["changed deps"] = changed
    if changed := params_changes(stage.params, entry.get("params") or {}, deps.params):
        reasons["changed params"] = changed
    if changed := compare_records(stage.outs, entry.get("outs") or [], outs, ws):
        reasons["changed outs"] = changed
    return reasons


def output_drift(stage: Stage, entry: dict[str, Any] | None, outs: dict[str, Record | None],
                 ws: Workspace) -> Reasons:
    """What others changed in the stage's outputs that is no reason to run it, as notes:
    `{"outs changed by others": {"hangar:.": {"labels": "changed (1 sample modified) …"}}}`."""
    old_by_key = {record_key(r): r for r in (entry or {}).get("outs") or []}
    drift: dict[str, Any] = {}
    for out in stage.outs:
        old, new = old_by_key.get(out.key), outs.get(out.key)
        if old is not None and new is not None and (change := out.drift(old, new, ws)):
            drift[out.key] = change
    return {"outs changed by others": drift} if drift else {}


def lock_entry(stage: Stage, deps: Measured, outs: dict[str, Record | None]) -> dict[str, Any]:
    """The lock entry of a stage that just ran: definition, dep records, param values, out records."""
    entry = stage.definition()
    if recs := [deps.deps[k] for k in sorted(deps.deps) if deps.deps[k] is not None]:
        entry["deps"] = recs
    if deps.params:
        entry["params"] = {f: dict(sorted(deps.params[f].items())) for f in sorted(deps.params)}
    if recs := [outs[k] for k in sorted(outs) if outs[k] is not None]:
        entry["outs"] = recs
    return entry


def describe(reasons: Reasons, stage: Stage | None = None, width: int | None = None) -> str:
    """Reasons in words, on one line; the stage's kinds word their own changes. Given a `width`,
    the line fits it: the full words if they fit, else each item in brief, else the first items
    and how many more, else each reason with its count of items, else cut at a word."""
    text = _join(_phrases(reasons, stage, brief=False))
    if width is None or len(text) <= width:
        return text
    phrases = _phrases(reasons, stage, brief=True)
    if len(text := _join(phrases)) <= width:
        return text
    items = [(reason, word) for reason, words in phrases for word in words or [""]]
    for keep in range(len(items) - 1, 0, -1):
        shown: list[tuple[str, list[str]]] = []
        for reason, word in items[:keep]:
            if not shown or shown[-1][0] != reason:
                shown.append((reason, []))
            if word:
                shown[-1][1].append(word)
        if len(text := f"{_join(shown)}, +{len(items) - keep} more") <= width:
            return text
    counted = "; ".join(f"{reason} ({len(words)})" if words else reason for reason, words in phrases)
    if len(counted) <= width and any(len(words) > 1 for _, words in phrases):  # reasons, items counted
        return counted
    cut = text[:width - 1].rsplit(" ", 1)[0]
    while cut.count("(") > cut.count(")"):  # no half a parenthesis
        cut = cut[:cut.rfind("(")]
    return cut.rstrip(" ,;:") + "…"


def samples_changed(detail: dict[str, Any], brief: bool = False) -> str:
    """`120 samples changed (100 added, 15 modified, 5 removed) since a=8f3c…`: the reason a stage
    that processes samples one by one (the map stage) gives for what it would redo; in brief,
    `120 samples changed (100 added, 15 modified, 5 removed)` without the counts that are 0."""
    counts = {k: int(detail.get(k) or 0) for k in ("added", "modified", "removed")}
    n, since = sum(counts.values()), str(detail.get("since") or "")
    said = ", ".join(f"{v} {k}" for k, v in counts.items() if v or not brief)
    return f"{n} sample{'s' * (n != 1)} changed ({said})" + (f" since {since[:10]}…" if since and not brief else "")


def _join(phrases: list[tuple[str, list[str]]]) -> str:
    return "; ".join(f"{reason}: {', '.join(words)}" if words else reason for reason, words in phrases)


def _phrases(reasons: Reasons, stage: Stage | None, brief: bool) -> list[tuple[str, list[str]]]:
    """Per reason, its items in words (none for a reason that is just true)."""
    items: dict[str, dict[str, Kind]] = {}
    if stage is not None:
        items = {"changed deps": {d.key: d for d in stage.deps},
                 "changed outs": {o.key: o for o in stage.outs},
                 "outs changed by others": {o.key: o for o in stage.outs}}
    phrases: list[tuple[str, list[str]]] = []
    for reason, detail in reasons.items():
        if reason == SAMPLES_CHANGED and isinstance(detail, dict):
            phrases.append((samples_changed(detail, brief), []))
        elif detail is True:
            phrases.append((reason, []))
        elif isinstance(detail, list):
            phrases.append((reason, [str(d) for d in detail]))
        else:
            known = items.get(reason, {})
            phrases.append((reason, [w for k, v in detail.items() for w in _words(known.get(k), k, v, brief)]))
    return phrases


def _words(kind: Kind | None, key: str, change: Any, brief: bool) -> list[str]:
    """An item's change in words; in brief, a kind's few words, or the names of what changed
    inside it (the params' keys)."""
    if kind is not None:
        return [kind.brief(change) if brief else kind.describe(change)]
    if brief:
        return list(change) if isinstance(change, dict) else [key]
    return [describe_change(key, change)]
