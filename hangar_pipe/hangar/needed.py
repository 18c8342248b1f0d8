"""Which Hangar columns a pull fetches data for, and at which commits: what the stages read.

By default, every column a stage's `hangar` dep reads from data.repo, at the commit that dep
needs: the pinned commit (`--data-commit`), else the commit pipeline.lock records for it, else
its ref's head (data.ref, or the branch pulled). Columns that are not at that commit (an
upstream stage writes them) are left out. Columns named explicitly, or all columns, are taken
at the pinned commit or the branch head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hangar_pipe.core.spec import DataDefaults, Stage
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.kinds import HangarDep, HangarOut
from hangar_pipe.hangar.store import HangarStore, short


def _recorded(entries: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(stage, dep label) -> the commit pipeline.lock records for that Hangar dep."""
    found: dict[tuple[str, str], str] = {}
    for stage, entry in entries.items():
        for rec in entry.get("deps") or []:
            if isinstance(rec, dict) and isinstance(rec.get("hangar"), str) and isinstance(
                    rec.get("commit"), str):
                found[(stage, rec["hangar"])] = rec["commit"]
    return found


def stage_columns(stages: Iterable[Stage], entries: Mapping[str, Mapping[str, Any]],
                  data: DataDefaults, store: HangarStore, branch: str, pinned: str | None,
                  warn: Any = None) -> dict[str, list[str]]:
    """commit -> the columns of data.repo that the stages read there (see the module doc)."""
    recorded = _recorded(entries)
    wanted: dict[str, set[str]] = {}
    for stage in stages:
        for dep in stage.deps:
            if not isinstance(dep, HangarDep) or isinstance(dep, HangarOut) or dep.repo != data.repo:
                continue
            commit = pinned or recorded.get((stage.name, dep.label))
            if commit is not None and not store.has_commit(commit):
                if warn is not None:
                    warn(f"pipeline.lock records {short(commit)} for {stage.name}, which the"
                         f" server's {branch} does not hold; fetching its head instead")
                commit = None
            if commit is None:
                try:
                    commit = store.resolve(dep.ref or data.ref or branch)[1]
                except UserError:
                    continue  # a branch the pull did not fetch
            present = set(store.column_names(commit))
            wanted.setdefault(commit, set()).update(c for c in dep.columns if c in present)
    return {commit: sorted(cols) for commit, cols in wanted.items() if cols}


def named_columns(store: HangarStore, commit: str, columns: list[str] | None) -> dict[str, list[str]]:
    """commit -> the named columns (all, for None); an unknown name is an error listing them."""
    present = store.column_names(commit)
    for name in columns or []:
        if name not in present:
            raise UserError(f"--columns: no column '{name}' at {short(commit)}; columns there: "
                            + (", ".join(present) or "none"))
    return {commit: sorted(columns) if columns is not None else present}
