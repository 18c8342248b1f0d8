"""What one call works with: the workspace that kinds measure, and the run context of a `repro`.

`Workspace` is what a kind sees: the project root, the stat cache, params files as parsed, and
the versioned data (a `DataSource`). `RunContext` adds what a run needs: the spec and graph,
pipeline.lock, the object store, the run cache, the history, the options, the reporter and the
run id. `Pipeline` builds a fresh one for every call, so each call sees the files as they are;
another workspace (an experiment's) is another context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hangar_pipe.core.params import load_params
from hangar_pipe.errors import UserError

if TYPE_CHECKING:
    from hangar_pipe.core.fingerprint import StatCache
    from hangar_pipe.core.graph import Graph
    from hangar_pipe.core.history import History
    from hangar_pipe.core.kinds import DataTarget
    from hangar_pipe.core.lockfile import LockFile
    from hangar_pipe.core.objects import ObjectStore
    from hangar_pipe.core.params import Where
    from hangar_pipe.core.reporter import Reporter
    from hangar_pipe.core.runcache import RunCache
    from hangar_pipe.core.spec import PipelineSpec


class DataSource(Protocol):
    """The versioned data stages read and write (Hangar repositories: `hangar_pipe.hangar.source`).

    Readers of one repository and ref see one commit for a whole run, resolved when first read,
    until a stage writes that repository.
    """

    def pin(self, ref: str) -> None:
        """`--data-commit`: readers of the main repository see this commit."""

    def environment(self, writes: DataTarget | None) -> dict[str, str]:
        """HPIPE_DATA_* variables for a stage's command (a writer's: where it commits)."""

    def written(self, target: DataTarget) -> None:
        """A stage committed to `target`: later readers see the new commit."""

    def commits(self) -> dict[str, str]:
        """`{"repo@ref": commit}` for everything this run has read so far."""

    def main_commit(self) -> str | None:
        """The commit of the main repository this run reads (None: no data yet)."""

    def close(self) -> None: ...


class Fetcher(Protocol):
    """What a run may bring from a remote when it needs it (`repro --pull`; `hangar_pipe.remote`)."""

    def entries(self, key: str) -> list[tuple[str, dict[str, Any]]]:
        """(run id, lock entry) results the remote holds for a run key, added to the local run cache."""

    def objects(self, recs: list[dict[str, Any]]) -> bool:
        """Fetch (hash-checked) the cache objects these output records need; whether all are here now."""


@dataclass
class Workspace:
    """What kinds measure against."""

    root: Path
    stat_cache: StatCache | None = None
    data: DataSource | None = None
    _params: dict[str, Any] = field(default_factory=dict)

    def params_file(self, rel: str, where: Where) -> Any:
        """A params file's data (YAML, JSON or TOML by its suffix), parsed once per call."""
        if rel not in self._params:
            path = self.root / rel
            if not path.is_file():
                raise UserError(f"params file '{rel}' not found", file=where[0], line=where[1],
                                key=where[2])
            self._params[rel] = load_params(path, rel) or {}
        return self._params[rel]

    def forget_params(self) -> None:
        """A stage may have written a params file: read them again."""
        self._params.clear()


@dataclass
class ReproOptions:
    """How `repro` runs (what to run is the targets)."""

    force: bool = False  # run the selected stages even when unchanged
    single: bool = False  # only the targets, not their upstream
    downstream: bool = False  # the targets and everything after them
    dry_run: bool = False  # decide, run nothing
    keep_going: bool = False  # after a failure, go on with what does not depend on it
    jobs: int = 1  # independent stages run at once
    data_commit: str | None = None  # read the main data repository at this ref; hold back writers
    run_cache: bool = True  # restore a stage whose inputs ran before instead of running it
    verify: bool = False  # rerun and compare metrics with the run recorded for the same inputs
    pull: bool = False  # fetch from a remote what a stage needs and this machine lacks
    remote: str | None = None  # with `pull`: the remote's name (default: the default remote)
    resume: bool = True  # a stage may resume what a killed run left in its HPIPE_STATE_DIR
    threads: int | None = None  # CPU threads of each built-in stage (None: recorded, else auto: core.threads)
    tags: dict[str, str] = field(default_factory=dict)  # recorded with the run (`--tag`; an experiment's point)


@dataclass
class RunContext:
    """What one command works with: the pipeline, its graph and workspace, the lock, the caches,
    the history, the options and the reporter (built by `Pipeline`, passed to every step)."""

    spec: PipelineSpec
    graph: Graph
    workspace: Workspace
    lock: LockFile
    objects: ObjectStore
    run_cache: RunCache
    history: History
    options: ReproOptions
    reporter: Reporter
    fetcher: Fetcher | None = None  # `repro --pull`: what is missing here comes from a remote
    started: float = 0.0  # set by `begin`
    run_id: str = ""

    def begin(self) -> None:
        """The run starts (under the repro mutex): stamp it, and read pipeline.lock as the run
        before it left it."""
        from hangar_pipe.core.history import new_run_id
        from hangar_pipe.core.lockfile import LockFile

        self.started = time.time()
        self.run_id = new_run_id(self.started)
        self.lock = LockFile(self.lock.path)

    @property
    def root(self) -> Path:
        return self.workspace.root

    @property
    def data(self) -> DataSource:
        assert self.workspace.data is not None
        return self.workspace.data
