"""The Python API: `Pipeline.load(path)`, then `.status()`, `.repro()`, `.dag()`, `.gc()` and the
results (metrics, params, runs, plots). The CLI is a thin layer over it.

    from hangar_pipe import Pipeline, ReproOptions
    result = Pipeline.load().repro(["train"], ReproOptions(jobs=2, keep_going=True))

Each call builds a fresh `RunContext` (the files, params, lock and Hangar refs as they are
now) wired to Hangar as the data source; the work itself is in `hangar_pipe.core`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hangar_pipe.core import layout
from hangar_pipe.core.context import ReproOptions, RunContext, Workspace
from hangar_pipe.core.graph import Graph
from hangar_pipe.core.history import History, RunRecord, Table, current_metrics, current_params
from hangar_pipe.core.lockfile import LockFile
from hangar_pipe.core.mutex import ReproMutex, held
from hangar_pipe.core.objects import ObjectStore
from hangar_pipe.core.reporter import Reporter, SilentReporter
from hangar_pipe.core.repro import commit, repro
from hangar_pipe.core.runcache import RunCache
from hangar_pipe.core.runner import RunResult
from hangar_pipe.core.spec import PipelineSpec, Stage, load_pipeline
from hangar_pipe.core.statcache import SqliteStatCache
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.source import HangarData, looks_like_digest

if TYPE_CHECKING:
    from hangar_pipe.hangar.remote import PullResult, PushResult

if TYPE_CHECKING:
    from hangar_pipe.remote.cache import RemoteFetcher
    from hangar_pipe.remote.transfer import TransferStats


def find_pipeline(path: str | Path | None = None) -> Path:
    """pipeline.yaml: the given file, the one in the given folder, or the nearest one above the cwd."""
    if path is not None:
        p = Path(path)
        p = p / layout.PIPELINE_FILE if p.is_dir() else p
        if not p.is_file():
            raise UserError("pipeline file not found", file=str(p))
        return p
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / layout.PIPELINE_FILE).is_file():
            return folder / layout.PIPELINE_FILE
    raise UserError(f"no {layout.PIPELINE_FILE} in {here} or any parent folder"
                    " (run 'hpipe init' to start one)")


class Pipeline:
    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.root = spec.root
        self.graph = Graph.build(spec)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Pipeline:
        return cls(load_pipeline(find_pipeline(path)))

    @property
    def stages(self) -> dict[str, Stage]:
        return self.spec.stages

    @property
    def lock(self) -> LockFile:
        """pipeline.lock as it is now."""
        return LockFile(self.root / layout.LOCK_FILE)

    @property
    def history(self) -> History:
        return History(layout.history_db(self.root))

    # -- running -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Workspace]:
        """The project as it is now, for one call: stat cache and Hangar repositories, closed after."""
        data = HangarData(self.root, self.spec.data.repo, self.spec.data.ref,
                          fingerprints_file=layout.hangar_fingerprints(self.root))
        stat_cache = SqliteStatCache(layout.stat_cache_db(self.root))
        try:
            yield Workspace(self.root, stat_cache, data)
        finally:
            stat_cache.close()
            data.close()

    def data_commit_of(self, ref: str | None = None) -> str | None:
        """The commit a ref names in data.repo (None: the head of data.ref); None with no data yet."""
        with self.workspace() as ws:
            if ws.data is None:
                return None
            if ref is not None:
                ws.data.pin(ref)
            return ws.data.main_commit()

    def context(self, ws: Workspace, options: ReproOptions, reporter: Reporter) -> RunContext:
        cache = layout.cache_dir(self.root)
        return RunContext(spec=self.spec, graph=self.graph, workspace=ws, lock=self.lock,
                          objects=ObjectStore(cache, reporter),
                          run_cache=RunCache(layout.run_cache_db(self.root), reporter.warning),
                          history=History(layout.history_db(self.root), reporter.warning),
                          options=options, reporter=reporter)

    def repro(self, targets: list[str] | None = None, options: ReproOptions | None = None,
              reporter: Reporter | None = None) -> RunResult:
        """Bring the targets (all stages by default) up to date and record them in pipeline.lock.

        See `ReproOptions` for force, jobs, keep_going, data_commit, run_cache, verify and the
        rest; with `verify`, each stage's outcome is in its result's `verify`.
        """
        options, reporter = options or ReproOptions(), reporter or SilentReporter()
        with self.workspace() as ws:
            ctx = self.context(ws, options, reporter)
            if options.pull and not options.dry_run:
                if self.spec.data.remote is not None:  # the data the stages read, at the commit wanted
                    self.data_pull(commit=options.data_commit, reporter=reporter)
                if options.remote is not None or self.has_cache_remote():
                    ctx.fetcher = self.remote_fetcher(options.remote, reporter)
            return repro(ctx, self._targets(targets))

    def _targets(self, targets: list[str] | None) -> list[str] | None:
        """Targets as the graph takes them: stage names, and paths relative to the project root
        (a path is given relative to the current folder)."""
        if not targets:
            return targets
        def project_path(t: str) -> str:
            rel = os.path.relpath(os.path.abspath(t), self.root).replace(os.sep, "/")
            return t if rel.startswith("../") or rel == ".." else rel
        return [t if self.graph.named(t) else project_path(t) for t in targets]

    def status(self, targets: list[str] | None = None, *, single: bool = False,
               downstream: bool = False, data_commit: str | None = None) -> RunResult:
        """What `repro` would run and why; runs nothing."""
        result = self.repro(targets, ReproOptions(single=single, downstream=downstream, dry_run=True,
                                                  data_commit=data_commit))
        self._note_remote_outputs(result)
        return result

    def has_cache_remote(self) -> bool:
        """Whether a cache remote is named (hpipe.yaml or hpipe.local.yaml)."""
        from hangar_pipe.remote.config import load_remotes

        return bool(load_remotes(self.root)[0])

    def _note_remote_outputs(self, result: RunResult) -> None:
        """A stage whose outputs are missing here but are in the default remote says so (a note)."""
        names = [r.name for r in result.stages if r.state == "would run"]
        if not names or not (self.root / layout.CONFIG_FILE).exists() and \
                not (self.root / layout.LOCAL_CONFIG_FILE).exists():
            return
        from hangar_pipe.remote.cache import missing_here, on_remote

        if not (missing := missing_here(self, names)) or (found := on_remote(self, missing)) is None:
            return
        remote, by_stage = found
        for r in result.stages:
            if r.name in by_stage:
                r.notes[f"on remote '{remote}'"] = by_stage[r.name]

    def commit(self, targets: list[str] | None = None) -> list[str]:
        """Record the stages (all by default) in pipeline.lock as the workspace is now, without
        running them; the names of those whose entry changed."""
        with self.workspace() as ws:
            return commit(self.context(ws, ReproOptions(), SilentReporter()), self._targets(targets))

    def dag(self, fmt: str = "ascii") -> str:
        return {"ascii": self.graph.ascii, "mermaid": self.graph.mermaid, "dot": self.graph.dot}[fmt]()

    def gc(self, keep_runs: int | None = None, dry_run: bool = False) -> dict[str, int]:
        """Drop run-cache entries of all but the newest `keep_runs` runs (all kept by default),
        cache objects that no kept entry, lock entry or workspace output needs, cached columns
        that no Hangar dep reads (as the lock records it, or now), the resume folders no run will
        resume (of stages that are gone, or of another run key than the stage's now), and the
        records of map stages that are gone."""
        from hangar_pipe.core import stage_state
        from hangar_pipe.hangar.column_cache import ColumnCache
        from hangar_pipe.hangar.kinds import column_fingerprints
        from hangar_pipe.mapping import state as map_state

        running = [p.parent.name for p in layout.experiments(self.root).glob("*/run.lock") if held(p)]
        if running:  # its points write and read the caches gc would clean
            raise UserError(f"experiment '{running[0]}' is running (hpipe exp run); run gc when it has finished")
        with ReproMutex(layout.repro_mutex(self.root)), self.workspace() as ws:
            objects, runs = ObjectStore(layout.cache_dir(self.root)), RunCache(layout.run_cache_db(self.root))
            history = self.history.latest(keep_runs)
            if keep_runs is None:
                kept_ids = {r for _, r, _ in runs.all()}
            else:  # the newest runs, and the earlier runs whose results they restored
                kept_ids = {r.id for r in history} | {
                    s["restored_from"] for r in history for s in r.stages if s.get("restored_from")}
            entries = runs.drop_runs_except(kept_ids, dry_run)
            recs = [rec for _, r, e in runs.all() if r in kept_ids for rec in e.get("outs") or []]
            recs += [rec for e in self.lock.entries.values() for rec in e.get("outs") or []]
            recs += [rec for s in self.stages.values() for o in s.outs  # what the workspace holds now
                     if o.cached and (rec := o.measure(ws)) is not None]
            count, size = objects.collect(objects.referenced(recs), dry_run)
            read = column_fingerprints(self.lock.entries.values(), self.stages.values(), ws)
            columns, column_bytes = ColumnCache(layout.columns_cache(self.root)).collect(read, dry_run)
            states = stage_state.collect(self.root, stage_state.current_keys(self.stages, ws), dry_run)
            maps, map_bytes = map_state.collect(self.root, list(self.stages), dry_run)
        return {"objects": count, "bytes": size, "run_cache_entries": entries,
                "column_entries": columns, "column_bytes": column_bytes,
                "state_folders": states.folders + maps, "state_bytes": states.bytes + map_bytes}

    # -- the cache remote (hangar_pipe.remote; fsspec is imported only here) ---------------------

    def push_cache(self, targets: list[str] | None = None, remote: str | None = None, *,
                   run_cache: bool = False, history: bool = False, jobs: int | None = None,
                   reporter: Reporter | None = None) -> TransferStats:
        """Upload the objects of the outputs pipeline.lock records for the targets (all stages by
        default; with `run_cache`, every run-cache entry and its objects too; with `history`, the run
        records) that the remote lacks."""
        from hangar_pipe.remote.cache import push_cache

        return push_cache(self, targets, remote, run_cache=run_cache, history=history, jobs=jobs,
                          reporter=reporter)

    def pull_cache(self, targets: list[str] | None = None, remote: str | None = None, *,
                   run_cache: bool = False, history: bool = False, jobs: int | None = None,
                   reporter: Reporter | None = None, restore: bool = True, check: bool = True) -> TransferStats:
        """Download the objects of the targets' locked outputs (with `run_cache`, the remote's run-cache
        entries and their objects too), each hash-checked, then (with `restore`) put back the outputs
        the workspace lacks. TransferError (exit 1) at the end if a remote object was corrupted (with
        `check`; else see the result's `corrupted` and its `check()`)."""
        from hangar_pipe.remote.cache import pull_cache

        return pull_cache(self, targets, remote, run_cache=run_cache, history=history, jobs=jobs,
                          reporter=reporter, restore=restore, check=check)

    def remote_fetcher(self, remote: str | None = None, reporter: Reporter | None = None,
                       jobs: int | None = None) -> RemoteFetcher:
        """What `repro --pull` puts in `RunContext.fetcher`: run-cache entries and objects on demand."""
        from hangar_pipe.remote.cache import remote_fetcher

        return remote_fetcher(self, remote, reporter, jobs)

    # -- results -----------------------------------------------------------------------------

    def metrics(self) -> Table:
        """Every stage's metrics files as they are now: {file: {dotted.name: value}}."""
        with self.workspace() as ws:
            return current_metrics(self.stages.values(), ws)

    def params(self) -> Table:
        """Every stage's params values as they are now: {file: {dotted.key: value}}."""
        with self.workspace() as ws:
            return current_params(self.stages.values(), ws)

    def runs(self, n: int | None = None) -> list[RunRecord]:
        """The recorded runs, newest first."""
        return self.history.latest(n)

    def plot_files(self) -> list[tuple[str, Path]]:
        """(key, file) of every `plots:` output that exists now."""
        with self.workspace() as ws:
            files = [(o.key, o.file(ws)) for s in self.stages.values() for o in s.outs if o.role == "plot"]
        return [(key, path) for key, path in files if path is not None and path.is_file()]

    def run_plot_files(self, runs: list[RunRecord]) -> list[tuple[str, list[tuple[RunRecord, Path]]]]:
        """For each `plots:` output, the file as each run left it (from the object cache): (key,
        [(run, file)]); a run whose file the cache no longer holds is left out of that key's list."""
        objects = ObjectStore(layout.cache_dir(self.root))
        keys = [o.key for s in self.stages.values() for o in s.outs if o.role == "plot"]
        found = []
        for key in keys:
            files = [(run, objects.path(run.outputs[key])) for run in runs  # (a pulled record: checked)
                     if re.fullmatch(r"[0-9a-f]{16,64}", run.outputs.get(key, ""))]
            found.append((key, [(run, path) for run, path in files if path.is_file()]))
        return found

    def plots(self, folder: Path) -> list[Path]:
        """Render every plot file to a PNG in `folder`, plus index.html (last in the list)."""
        from hangar_pipe.plots import render_all

        files = self.plot_files()
        if not files:
            raise UserError("no plot files yet: declare them under `plots:` and run `hpipe repro`")
        return [*render_all(files, folder), folder / "index.html"]

    def data_repo(self) -> Path:
        """The folder of the main data repository (data.repo)."""
        return (self.root / self.spec.data.repo).resolve()

    # -- data remote (a hangar server) -------------------------------------------------------

    def data_address(self, address: str | None = None) -> str:
        """The data remote's host:port: `address`, else data.remote; an error when neither is set."""
        address = address or self.spec.data.remote
        if not address:
            raise UserError("no data remote: add `remote: host:port` (a hangar server) under"
                            " `data:` in pipeline.yaml", file=self.spec.file)
        return address

    def _data_branch(self, branch: str | None) -> str | None:
        ref = self.spec.data.ref
        return branch or (ref if ref and not looks_like_digest(ref) else None)

    def data_push(self, branch: str | None = None, *, address: str | None = None,
                  reporter: Reporter | None = None) -> PushResult:
        """Push the data branch (default: data.ref, else the repository's HEAD branch) to the data
        remote. A TransferError (exit 1) when the server's branch has commits the local one lacks."""
        from hangar_pipe.hangar import remote

        return remote.push(self.data_repo(), self.data_address(address), self._data_branch(branch),
                           reporter)

    def data_pull(self, columns: list[str] | None = None, commit: str | None = None, *,
                  all_columns: bool = False, branch: str | None = None, address: str | None = None,
                  reporter: Reporter | None = None) -> PullResult:
        """Fetch the data branch's records from the data remote (a clone when there is no
        repository yet), fast-forward the local branch, then fetch the sample data of the columns
        the stages read (`data_wanted`), or of `columns`, or of all columns."""
        from hangar_pipe.hangar import remote

        folder, where = self.data_repo(), self.data_address(address)
        records = remote.fetch_records(folder, where, self._data_branch(branch))
        wanted = self.data_wanted(records.branch, columns, commit, all_columns=all_columns,
                                  reporter=reporter)
        return remote.PullResult(records, remote.fetch_data(folder, where, wanted, reporter))

    def data_wanted(self, branch: str, columns: list[str] | None = None, commit: str | None = None,
                    *, all_columns: bool = False, reporter: Reporter | None = None
                    ) -> dict[str, list[str]]:
        """commit -> columns whose sample data a pull fetches: `columns` (or all) at `commit` or the
        branch head; by default what the stages read (see `hangar.needed`)."""
        from hangar_pipe.hangar.needed import named_columns, stage_columns
        from hangar_pipe.hangar.store import HangarStore

        store = HangarStore(self.data_repo())
        try:
            pinned = store.resolve(commit)[1] if commit else None
            if columns or all_columns:
                return named_columns(store, pinned or store.resolve(branch)[1],
                                     None if all_columns else columns)
            warn = (reporter or SilentReporter()).warning
            return stage_columns(self.stages.values(), self.lock.entries, self.spec.data, store,
                                 branch, pinned, warn)
        finally:
            store.close()
