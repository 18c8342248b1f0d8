"""The run's view of Hangar repositories: each (repo, ref) resolved to one commit, the `DataSource` of the core."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hangar_pipe.core.kinds import DataTarget
from hangar_pipe.errors import UserError
from hangar_pipe.hangar import is_repository

if TYPE_CHECKING:  # imported with the first store: a pipeline without Hangar data never needs them
    from hangar_pipe.hangar.fingerprints import FingerprintCache
    from hangar_pipe.hangar.store import HangarStore


@dataclass
class HangarData:
    """Per run: open repositories, and each (repo, ref) resolved to one commit.

    Every reader of a (repo, ref) sees the commit resolved when the run first reads it, until a
    stage that writes that repo commits (`written`). With `pin`, every reader of the main repo
    reads that commit.
    """

    root: Path
    repo: str  # data.repo, relative to the root: the main repository
    ref: str | None  # data.ref
    pinned: str | None = None  # --data-commit, resolved
    fingerprints_file: Path | None = None  # where column fingerprints are kept by (commit, column)
    fingerprints: FingerprintCache | None = None  # loaded from it with the first store
    _stores: dict[str, HangarStore | None] = field(default_factory=dict)
    _resolved: dict[tuple[str, str | None], tuple[str, str]] = field(default_factory=dict)

    def path(self, repo: str) -> Path:
        return (self.root / repo).resolve()

    def store(self, repo: str) -> HangarStore | None:
        if repo not in self._stores and not is_repository(self.path(repo)):
            self._stores[repo] = None  # (without importing HangarStore)
        if repo not in self._stores:
            from hangar_pipe.hangar.fingerprints import FingerprintCache
            from hangar_pipe.hangar.store import HangarStore

            if self.fingerprints is None and self.fingerprints_file is not None:
                self.fingerprints = FingerprintCache(self.fingerprints_file)
            try:
                self._stores[repo] = HangarStore(self.path(repo), self.fingerprints)
            except FileNotFoundError:
                self._stores[repo] = None
        return self._stores[repo]

    def default_ref(self, repo: str, ref: str | None) -> str | None:
        return ref if ref is not None else (self.ref if repo == self.repo else None)

    def pin(self, ref: str) -> None:
        store = self.store(self.repo)
        if store is None:
            raise UserError(f"--data-commit: no Hangar repository in {self.path(self.repo)}")
        self.pinned = store.resolve(ref)[1]

    def resolve(self, repo: str, ref: str | None) -> tuple[str, str] | None:
        """(ref name, commit) a reader of (repo, ref) sees in this run; None if there is no data yet."""
        key = (repo, ref)
        if key not in self._resolved:
            store = self.store(repo)
            if store is None:
                return None
            if self.pinned is not None and repo == self.repo:
                self._resolved[key] = store.resolve(self.pinned)
            else:
                wanted = self.default_ref(repo, ref)
                branches = store.branches()
                if branches.get(wanted or store.head_branch(), "x") == "":
                    return None  # a branch with no commits yet
                if wanted is not None and wanted not in branches and not looks_like_digest(wanted):
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

    def commits(self) -> dict[str, str]:
        return {f"{repo}@{name}": commit for (repo, _), (name, commit) in self._resolved.items()}

    def main_commit(self) -> str | None:
        resolved = self.resolve(self.repo, None)
        return resolved[1] if resolved else None

    def written(self, target: DataTarget) -> None:
        """A stage committed to the repo: later readers re-resolve, and the store is reopened."""
        self._resolved = {k: v for k, v in self._resolved.items() if k[0] != target.repo}
        store = self._stores.pop(target.repo, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        if self.fingerprints is not None:
            self.fingerprints.save()
        for store in self._stores.values():
            if store is not None:
                store.close()
        self._stores.clear()

    def environment(self, writes: DataTarget | None) -> dict[str, str]:
        """HPIPE_DATA_* for a stage's command: the main repo and the commit it reads; for a writer,
        the repo and branch it commits to."""
        if writes is not None:
            return {"HPIPE_DATA_REPO": str(self.path(writes.repo)),
                    "HPIPE_DATA_BRANCH": self.write_branch(writes.repo, writes.ref)}
        env = {"HPIPE_DATA_REPO": str(self.path(self.repo))}
        resolved = self.resolve(self.repo, None)
        if resolved is not None:
            env["HPIPE_DATA_REF"], env["HPIPE_DATA_COMMIT"] = resolved
        return env


def looks_like_digest(ref: str) -> bool:
    body = ref[2:] if ref.startswith("a=") else ref
    return len(body) >= 6 and all(c in "0123456789abcdef" for c in body)


def pinned_commit(repo: str | os.PathLike[str] | None = None, commit: str | None = None
                  ) -> tuple[Path, str]:
    """(repo folder, commit) for code inside a stage: the arguments, or what hpipe resolved for
    this stage (HPIPE_DATA_REPO, HPIPE_DATA_COMMIT)."""
    repo = repo or os.environ.get("HPIPE_DATA_REPO")
    commit = commit or os.environ.get("HPIPE_DATA_COMMIT")
    if not repo or not commit:
        raise UserError("no data commit: run this through `hpipe repro` (which sets"
                        " HPIPE_DATA_REPO and HPIPE_DATA_COMMIT), or pass repo= and commit=")
    return Path(repo), commit
