"""Hangar columns as dependencies and outputs, identified by commit and by per-column fingerprint.

In pipeline.yaml:  `- hangar: [col, ...]` (data.repo at data.ref) or
`- hangar: {repo: ../other, ref: dev, columns: [col, ...]}`. A `hangar` out makes the stage a
writer of those columns. The lock records repo, ref, the resolved commit, and per column its
fingerprint and sample count; a stage reruns only when one of *its* columns changed.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hangar_pipe.hangar_store import HangarStore, short

Record = dict[str, Any]
_KEYS = {"repo", "ref", "columns"}


@dataclass
class HangarData:
    """Per run: open repositories, and each (repo, ref) resolved to one commit.

    Every reader of a (repo, ref) sees the commit resolved when the run starts, until a stage
    that writes that repo commits (`written`). With `pin`, every dep of data.repo reads that commit.
    """

    root: Path
    repo: str  # data.repo, relative to the root
    ref: str | None  # data.ref
    pin: str | None = None  # --data-commit
    _stores: dict[str, HangarStore | None] = field(default_factory=dict)
    _resolved: dict[tuple[str, str | None], tuple[str, str]] = field(default_factory=dict)

    def path(self, repo: str) -> Path:
        return (self.root / repo).resolve()

    def store(self, repo: str) -> HangarStore | None:
        if repo not in self._stores:
            try:
                self._stores[repo] = HangarStore(self.path(repo))
            except FileNotFoundError:
                self._stores[repo] = None
        return self._stores[repo]

    def default_ref(self, repo: str, ref: str | None) -> str | None:
        return ref if ref is not None else (self.ref if repo == self.repo else None)

    def resolve(self, repo: str, ref: str | None) -> tuple[str, str] | None:
        """(ref name, commit) a reader of (repo, ref) sees in this run; None if there is no data yet."""
        key = (repo, ref)
        if key not in self._resolved:
            store = self.store(repo)
            if store is None:
                return None
            if self.pin is not None and repo == self.repo:
                self._resolved[key] = store.resolve(self.pin)
            else:
                wanted = self.default_ref(repo, ref)
                branches = store.branches()
                if branches.get(wanted or store.head_branch(), "x") == "":
                    return None  # a branch with no commits yet
                if wanted is not None and wanted not in branches and not _looks_like_digest(wanted):
                    return None  # a branch a writer stage has yet to create
                self._resolved[key] = store.resolve(wanted)
        return self._resolved[key]

    def branch_head(self, repo: str, ref: str | None) -> tuple[str, str] | None:
        """The current head of the branch a writer commits to (not cached)."""
        store = self.store(repo)
        if store is None:
            return None
        branch = self.write_branch(repo, ref)
        commit = store.branches().get(branch)
        return (branch, commit) if commit else None

    def write_branch(self, repo: str, ref: str | None) -> str:
        wanted = self.default_ref(repo, ref)
        if wanted is not None:
            return wanted
        store = self.store(repo)
        return store.head_branch() if store is not None else "master"

    def resolved(self) -> dict[str, str]:
        """{"repo@ref": commit} for every (repo, ref) this run has read so far."""
        return {f"{repo}@{name}": commit for (repo, _), (name, commit) in self._resolved.items()}

    def written(self, repo: str) -> None:
        """A stage committed to repo: later readers re-resolve, and the store is reopened."""
        self._resolved = {k: v for k, v in self._resolved.items() if k[0] != repo}
        store = self._stores.pop(repo, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        for store in self._stores.values():
            if store is not None:
                store.close()
        self._stores.clear()

    def environment(self, writer: HangarOut | None) -> dict[str, str]:
        """HPIPE_DATA_* variables for a stage's command: where its data is, at which commit."""
        env = {"HPIPE_DATA_REPO": str(self.path(self.repo))}
        if writer is not None:
            env["HPIPE_DATA_REPO"] = str(self.path(writer.repo))
            env["HPIPE_DATA_BRANCH"] = self.write_branch(writer.repo, writer.ref)
            return env
        resolved = self.resolve(self.repo, None)
        if resolved is not None:
            env["HPIPE_DATA_REF"], env["HPIPE_DATA_COMMIT"] = resolved
        return env


def _looks_like_digest(ref: str) -> bool:
    body = ref[2:] if ref.startswith("a=") else ref
    return len(body) >= 6 and all(c in "0123456789abcdef" for c in body)


@dataclass(frozen=True)
class HangarDep:
    """Columns a stage reads from a Hangar repository."""

    repo: str
    ref: str | None
    columns: tuple[str, ...]
    kind: ClassVar[str] = "hangar"

    @property
    def key(self) -> str:
        return f"hangar:{self.label}"

    @property
    def label(self) -> str:
        """The record's first field: the repo, plus the ref when the pipeline names one."""
        return self.repo + (f"@{self.ref}" if self.ref else "")

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(f"hangar:{self.repo}:{c}" for c in self.columns)

    def _resolve(self, data: HangarData) -> tuple[str, str] | None:
        return data.resolve(self.repo, self.ref)

    def measure(self, ctx: Any) -> Record | None:
        data: HangarData = ctx.data
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

    def changes(self, old: Record, new: Record, ctx: Any) -> dict[str, str] | None:
        """Per column: new, removed, or how its data changed between the two commits."""
        old_cols, new_cols = old.get("columns") or {}, new.get("columns") or {}
        out: dict[str, str] = {}
        for name in sorted(old_cols.keys() | new_cols.keys()):
            if name not in old_cols:
                out[name] = "new"
            elif name not in new_cols:
                out[name] = "removed"
            elif old_cols[name].get("fingerprint") != new_cols[name].get("fingerprint"):
                store = ctx.data.store(self.repo)
                out[name] = (store.explain(old["commit"], new["commit"], name) if store else "changed")
        return out or None

    def missing(self, ctx: Any) -> str | None:
        """Why this dep cannot be read now (for the check before a run), or None."""
        data: HangarData = ctx.data
        store = data.store(self.repo)
        if store is None:
            return f"no Hangar repository in {data.path(self.repo)}"
        resolved = self._resolve(data)
        if resolved is None:
            return str(store.unknown_ref(data.default_ref(self.repo, self.ref) or ""))
        ref, commit = resolved
        absent = [c for c in self.columns if store.column(commit, c) is None]
        if absent:
            have = ", ".join(store.column_names(commit)) or "none"
            return (f"hangar column '{absent[0]}' not found in {self.repo} at {ref} ({short(commit)});"
                    f" columns there: {have}")
        return None


@dataclass(frozen=True)
class HangarOut(HangarDep):
    """Columns a stage writes and commits to its branch; recorded with the commit it produced."""

    def _resolve(self, data: HangarData) -> tuple[str, str] | None:
        return data.branch_head(self.repo, self.ref)


def parse_hangar(ctx: Any, value: Any, keypath: tuple[Any, ...], is_out: bool) -> HangarDep:
    """`hangar: [cols]` or `hangar: {repo, ref, columns}` from pipeline.yaml."""
    repo, ref = ctx.data.repo, None
    if isinstance(value, dict):
        for key in value:
            if key not in _KEYS:
                import difflib

                close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ctx.error(keypath, f"unknown key '{key}'{hint}", at=keypath + (key,))
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
    if is_out and ref is not None and _looks_like_digest(ref):
        raise ctx.error(keypath + ("ref",), "a writer commits to a branch; name a branch, not a commit")
    if is_out and ref is None and repo == ctx.data.repo and ctx.data.ref and _looks_like_digest(
            ctx.data.ref):
        raise ctx.error(keypath, f"this stage writes data.repo, but data.ref '{ctx.data.ref}' is a"
                                 " commit; a writer commits to a branch: give this out a `ref:` branch")
    repo = posixpath.normpath(repo.replace(os.sep, "/"))
    cls = HangarOut if is_out else HangarDep
    return cls(repo, ref, tuple(columns))

