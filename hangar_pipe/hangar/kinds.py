"""Hangar columns as dependencies and outputs, identified by commit and by per-column fingerprint.

In pipeline.yaml:  `- hangar: [col, ...]` (data.repo at data.ref) or
`- hangar: {repo: ../other, ref: dev, columns: [col, ...]}`. A `hangar` out makes the stage a
writer of those columns. The lock records repo, ref, the resolved commit, and per column its
fingerprint and sample count; a stage reruns only when one of *its* columns changed.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.kinds import Change, DataTarget, Kind, Record
from hangar_pipe.core.spec import SpecContext, Stage
from hangar_pipe.core.yamlfile import KeyPath
from hangar_pipe.errors import UserError, did_you_mean
from hangar_pipe.hangar.source import HangarData, looks_like_digest
from hangar_pipe.hangar.store import HangarStore, short

_KEYS = ("columns", "ref", "repo")


def _data(ws: Workspace) -> HangarData:
    assert isinstance(ws.data, HangarData), "Hangar kinds need the Hangar data source"
    return ws.data


@dataclass(frozen=True)
class HangarDep(Kind):
    """Columns a stage reads from a Hangar repository."""

    repo: str
    ref: str | None
    columns: tuple[str, ...]
    tag: ClassVar[str] = "hangar"

    @property
    def key(self) -> str:
        return f"hangar:{self.label}"

    @property
    def label(self) -> str:
        """The record's tag value: the repo, plus the ref when the pipeline names one."""
        return self.repo + (f"@{self.ref}" if self.ref else "")

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(f"hangar:{self.repo}:{c}" for c in self.columns)

    @classmethod
    def parse(cls, ctx: SpecContext, value: Any, keypath: KeyPath, is_out: bool) -> Kind:
        return parse_hangar(ctx, value, keypath, is_out)

    def _resolve(self, data: HangarData) -> tuple[str, str] | None:
        return data.resolve(self.repo, self.ref)

    def measure(self, ws: Workspace) -> Record | None:
        data = _data(ws)
        store = data.store(self.repo)
        resolved = self._resolve(data)
        if store is None or resolved is None:
            return None
        ref, commit = resolved
        columns: dict[str, Any] = {}
        for name in self.columns:
            state = store.column(commit, name)
            if state is None:
                return None
            columns[name] = {"fingerprint": state.fingerprint, "samples": state.samples}
        return {"hangar": self.label, "ref": ref, "commit": commit, "columns": columns}

    def ignored(self, ws: Workspace) -> list[Path]:
        """The repository's `.hangar` folder, when it lives in the project: Hangar versions it."""
        return [_data(ws).path(self.repo) / ".hangar"]

    def identity(self, rec: Record) -> Any:
        """The columns' fingerprints: the same data at another commit is the same input."""
        return {c: v.get("fingerprint") for c, v in rec["columns"].items()}

    def changes(self, old: Record, new: Record, ws: Workspace) -> dict[str, Change] | None:
        """Per column: new, removed, or how its data changed between the two commits."""
        return self._columns_changed(old, new, ws, listed=True, content=True)

    def _columns_changed(self, old: Record, new: Record, ws: Workspace, *, listed: bool, content: bool
                         ) -> dict[str, Change] | None:
        """Per column: `listed` changes (new, removed), `content` ones (explained in data terms,
        which reads the commits' records: only asked for when wanted)."""
        old_cols, new_cols = old.get("columns") or {}, new.get("columns") or {}
        out: dict[str, Change] = {}
        for name in sorted(old_cols.keys() | new_cols.keys()):
            if name not in old_cols or name not in new_cols:
                if listed:
                    out[name] = "new" if name not in old_cols else "removed"
            elif content and old_cols[name].get("fingerprint") != new_cols[name].get("fingerprint"):
                store = _data(ws).store(self.repo)
                out[name] = (store.column_change(old["commit"], new["commit"], name) if store
                             else {"from": old["commit"], "to": new["commit"]})
        return out or None

    def describe(self, change: Change) -> str:
        """In data terms, columns changed between the same commits together: `hangar columns a
        (1 sample modified), b (2 samples added) of ../other@dev changed between a=… and a=…`."""
        if not isinstance(change, dict):
            return super().describe(change)
        where = "" if self.label == "." else f" of {self.label}"
        return ", ".join(describe_columns(change, where))

    def brief(self, change: Change) -> str:
        """`column a (1 modified)`, `3 columns (5 modified, 2 added)` (of ../other@dev)."""
        if not isinstance(change, dict):
            return super().brief(change)
        where = "" if self.label == "." else f" of {self.label}"
        totals = {k: sum(w.get(k, 0) for w in change.values() if isinstance(w, dict))
                  for k in ("modified", "added", "removed")}
        for w in change.values():  # a column new to or gone from the dep
            if isinstance(w, str):
                totals[w] = totals.get(w, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in totals.items() if n)
        what = f"column {next(iter(change))}" if len(change) == 1 else f"{len(change)} columns"
        return what + where + (f" ({counts})" if counts else "")

    def missing(self, ws: Workspace, produced: Callable[[str], bool]) -> str | None:
        """Resolves the commit this run reads, from the start; why it cannot be read, or None.

        Every column must be at that commit, but for those an upstream stage writes; the ref must
        be a branch, a commit, or a branch a writer stage names."""
        data = _data(ws)
        store = data.store(self.repo)
        if store is not None and (unknown := self._unknown_ref(data, store, produced)):
            return unknown
        resolved = self._resolve(data) if store is not None else None
        needed = [c for c, edge in zip(self.columns, self.edges) if not produced(edge)]
        if not needed:
            return None
        if store is None:
            return (f"hangar column '{needed[0]}' is written by no stage, and there is no Hangar"
                    f" repository in {data.path(self.repo)} yet (`hpipe pull` fetches it where"
                    " data.remote names a hangar server)")
        if resolved is None:
            return str(store.unknown_ref(data.default_ref(self.repo, self.ref) or ""))
        ref, commit = resolved
        absent = [c for c in needed if store.column(commit, c) is None]
        if absent:
            have = ", ".join(store.column_names(commit)) or "none"
            return (f"hangar column '{absent[0]}' not found in {self.repo} at {ref} ({short(commit)});"
                    f" columns there: {have}")
        return None

    def _unknown_ref(self, data: HangarData, store: HangarStore, produced: Callable[[str], bool]
                     ) -> str | None:
        """Why the ref this dep reads names nothing (listing the branches), or None."""
        ref = data.default_ref(self.repo, self.ref)
        if ref is None or ref in store.branches() or produced(DataTarget(self.repo, ref).edge):
            return None
        try:
            store.resolve(ref)
        except UserError as exc:
            return exc.message
        return None


@dataclass(frozen=True)
class HangarOut(HangarDep):
    """Columns a stage writes and commits to its branch; recorded with the commit it produced."""

    def _resolve(self, data: HangarData) -> tuple[str, str] | None:
        return data.branch_head(self.repo, self.ref)

    @property
    def writes(self) -> DataTarget:
        return DataTarget(self.repo, self.ref)

    def changes(self, old: Record, new: Record, ws: Workspace) -> dict[str, Change] | None:
        """Only columns added to or dropped from the out: a commit by someone else to the
        writer's columns is new data, not a reason to write them again (see `drift`)."""
        return self._columns_changed(old, new, ws, listed=True, content=False)

    def drift(self, old: Record, new: Record, ws: Workspace) -> dict[str, Change] | None:
        """How the writer's columns changed since it committed them, by others' commits."""
        return self._columns_changed(old, new, ws, listed=False, content=True)

    def missing(self, ws: Workspace, produced: Callable[[str], bool]) -> str | None:
        """A writer creates a branch only when its out names it (`ref:`): a misspelt data.ref is
        an error, not a new branch."""
        data = _data(ws)
        store = data.store(self.repo)
        if self.ref is not None:
            return None
        branch = data.write_branch(self.repo, None)
        branches = store.branches() if store is not None else {"master": ""}  # a new repo's branch
        if branch in branches:
            return None
        return (f"this stage writes branch '{branch}' (data.ref) of {self.repo}, which does not exist;"
                f" branches: {', '.join(sorted(branches)) or 'none'}. To create it, name it in the out:"
                f" `hangar: {{columns: [...], ref: {branch}}}`")


def column_fingerprints(lock_entries: Iterable[Mapping[str, Any]], stages: Iterable[Stage],
                        ws: Workspace) -> set[str]:
    """Fingerprints of the columns of every Hangar dep and out: as pipeline.lock records them, and
    as they are now (what the next run reads). `hpipe gc` keeps their column cache entries."""
    recs = [rec for entry in lock_entries for section in ("deps", "outs")
            for rec in entry.get(section) or [] if isinstance(rec, dict) and isinstance(rec.get("hangar"), str)]
    recs += [rec for stage in stages for kind in (*stage.deps, *stage.outs)
             if isinstance(kind, HangarDep) and (rec := kind.measure(ws)) is not None]
    found: set[str] = set()
    for rec in recs:
        columns = rec.get("columns")
        for column in columns.values() if isinstance(columns, dict) else ():
            if isinstance(column, dict) and isinstance(column.get("fingerprint"), str):
                found.add(column["fingerprint"])
    return found


def describe_columns(change: dict[str, Change], where: str) -> list[str]:
    """Column changes in words, one phrase per (from, to) span and one per listed change."""
    spans: dict[tuple[str, str], list[str]] = {}
    phrases: list[str] = []
    for col, what in change.items():
        if not isinstance(what, dict):
            phrases.append(f"hangar column {col}{where} {what}")
            continue
        counts = [f"{n} sample{'s' if n != 1 else ''} {k}" for k in ("modified", "added", "removed")
                  if (n := what.get(k))]
        counts += [f"schema {k} {a} -> {b}" for k, (a, b) in (what.get("schema") or {}).items()]
        if "column" in what:
            counts.append(f"column {what['column']}")
        detail = f" ({', '.join(counts)})" if counts else ""
        spans.setdefault((str(what.get("from")), str(what.get("to"))), []).append(f"{col}{detail}")
    for (a, b), cols in spans.items():
        noun = "column" if len(cols) == 1 else "columns"
        phrases.append(f"hangar {noun} {', '.join(cols)}{where} changed between {a[:10]} and {b[:10]}")
    return phrases


def parse_hangar(ctx: SpecContext, value: Any, keypath: KeyPath, is_out: bool) -> HangarDep:
    """`hangar: [cols]` or `hangar: {repo, ref, columns}` from pipeline.yaml."""
    repo, ref = ctx.data.repo, None
    if isinstance(value, dict):
        for key in value:
            if key not in _KEYS:
                raise ctx.error(keypath, f"unknown key '{key}'{did_you_mean(str(key), _KEYS)}",
                                at=keypath + (key,))
        repo = value.get("repo", repo)
        ref = value.get("ref")
        columns = value.get("columns")
        cols_path = keypath + ("columns",)
        if not isinstance(repo, str) or not repo:
            raise ctx.error(keypath + ("repo",), "expected a folder path")
        if ref is not None and (not isinstance(ref, str) or not ref):
            raise ctx.error(keypath + ("ref",), "expected a branch name or commit digest")
    else:
        columns, cols_path = value, keypath
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        raise ctx.error(cols_path, "expected a non-empty list of column names")
    if len(set(columns)) != len(columns):
        raise ctx.error(cols_path, "a column is listed twice")
    if is_out and ref is not None and looks_like_digest(ref):
        raise ctx.error(keypath + ("ref",), "a writer commits to a branch; name a branch, not a commit")
    if is_out and ref is None and repo == ctx.data.repo and ctx.data.ref and looks_like_digest(
            ctx.data.ref):
        raise ctx.error(keypath, f"this stage writes data.repo, but data.ref '{ctx.data.ref}' is a"
                                 " commit; a writer commits to a branch: give this out a `ref:` branch")
    repo = posixpath.normpath(repo.replace(os.sep, "/"))
    cls = HangarOut if is_out else HangarDep
    return cls(repo, ref, tuple(columns))
