"""What a map stage redoes: every sample, or only those whose input records changed (pure).

`plan_map` compares the new input commit's records with the provenance of the last good run.
A sample is processed again when its record changed in any input column (added or modified),
and its outputs are deleted when it left every input column. Anything else that could change an
output (the function, its arguments, params or code, an input schema: the config digest; the
output columns no longer being the ones last committed; `-f`) means every sample is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hangar_pipe.errors import UserError
from hangar_pipe.hangar.keys import key_value, sort_keys
from hangar_pipe.hangar.record_diff import by_key, changed_records
from hangar_pipe.hangar.store import short
from hangar_pipe.mapping.state import MapState


@dataclass(frozen=True)
class MapPlan:
    """Every sample (`full` says why), or only `process`, with `remove` deleted from the outputs."""

    full: str | None
    process: list[bytes]
    remove: list[bytes] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # added, modified, removed
    since: str | None = None  # the input commit last processed

    @property
    def reason(self) -> dict[str, object]:
        """As status says it (core.decisions.SAMPLES_CHANGED)."""
        return {**self.counts, "since": self.since}


def cut(column: str) -> int:
    """The length of a record's `f:<column>:` prefix."""
    return len(column.encode()) + 3


def full_reason(previous: MapState | None, old_runs: dict[str, bytes] | None, config: str,
                outputs_now: dict[str, str], force: bool) -> str | None:
    """Why every sample must be computed, or None when the last run's outputs can be updated."""
    if force:
        return "forced (-f)"
    if previous is None or old_runs is None:
        return "no earlier run of this stage here"
    if previous.config != config:
        return "its function, arguments, params, code or input schemas changed"
    if set(old_runs) != set(previous.inputs):
        return "its provenance does not match its state"
    if outputs_now != previous.outputs:
        return "its output columns are not the ones it last committed"
    return None


def plan_map(previous: MapState | None, old_runs: dict[str, bytes] | None, config: str,
             new_runs: dict[str, bytes], outputs_now: dict[str, str], force: bool) -> MapPlan:
    """The samples to compute and to delete, from the input columns' records now (`new_runs`)."""
    why = full_reason(previous, old_runs, config, outputs_now, force)
    if why is not None:
        return MapPlan(why, sort_keys(same_keys(new_runs)))
    assert previous is not None and old_runs is not None
    added: dict[str, set[bytes]] = {}
    removed: dict[str, set[bytes]] = {}
    modified: set[bytes] = set()
    for column, run in new_runs.items():
        old, new = changed_records(old_runs[column], run, cut(column))
        added[column], removed[column] = new.keys() - old.keys(), old.keys() - new.keys()
        modified |= old.keys() & new.keys()
    first = next(iter(new_runs))
    for column in new_runs:  # a sample comes and goes in every input column at once
        for what, sets in (("added to", added), ("removed from", removed)):
            if odd := sets[column] ^ sets[first]:
                key = min(odd)
                where = column if key in sets[column] else first
                raise UserError(f"sample {key_value(key)!r} was {what} column '{where}' alone between"
                                f" {short(previous.input_commit)} and now: the input columns must hold"
                                " the same samples")
    gone, new_keys = removed[first], added[first]
    counts = {"added": len(new_keys), "modified": len(modified - new_keys - gone), "removed": len(gone)}
    return MapPlan(None, sort_keys((new_keys | modified) - gone), sort_keys(gone), counts,
                   previous.input_commit)


def same_keys(runs: dict[str, bytes]) -> list[bytes]:
    """The sample keys of the input columns, which must all hold the same ones."""
    keys: set[bytes] | None = None
    first = ""
    for column, run in runs.items():
        here = set(by_key([run], cut(column)))
        if keys is None:
            keys, first = here, column
        elif odd := here ^ keys:
            key = min(odd)
            has, lacks = (column, first) if key in here else (first, column)
            raise UserError(f"sample {key_value(key)!r} is in column '{has}' but not in '{lacks}': the"
                            " input columns must hold the same samples")
    return list(keys or ())
