"""The Python API: `Pipeline.load(path).status()`, `.repro(...)`, `.dag()`. The CLI is a thin layer over it."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hangar_pipe import runner
from hangar_pipe.cache import ObjectStore, RunCache, run_key
from hangar_pipe.deps import Context, PathDep, PathOut, read_metrics, record_key
from hangar_pipe.errors import UserError
from hangar_pipe.graph import Graph
from hangar_pipe.hangar_deps import HangarData, HangarDep, HangarOut
from hangar_pipe.history import History, RunRecord, current_metrics, current_params, new_run_id
from hangar_pipe.lock import LOCK_FILE, LockFile
from hangar_pipe.runner import Processes, RunResult, StageError, StageResult
from hangar_pipe.spec import PIPELINE_FILE, PipelineSpec, Stage, load_pipeline
from hangar_pipe.state import STATE_DIR, ProjectLock, StateDB
from hangar_pipe.status import Measured, lock_entry, measure_deps, measure_outs, stage_reasons


def find_pipeline(path: str | Path | None = None) -> Path:
    """pipeline.yaml: the given file, the one in the given folder, or the nearest one above the cwd."""
    if path is not None:
        p = Path(path)
        p = p / PIPELINE_FILE if p.is_dir() else p
        if not p.is_file():
            raise UserError("pipeline file not found", file=str(p))
        return p
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / PIPELINE_FILE).is_file():
            return folder / PIPELINE_FILE
    raise UserError(f"no {PIPELINE_FILE} in {here} or any parent folder (run 'hpipe init' to start one)")


def shell_commands(cmd: str | list[str]) -> list[str]:
    """A stage's commands: a list as given; a multi-line string one command per line (`\\` continues)."""
    if isinstance(cmd, list):
        return cmd
    commands, current = [], ""
    for line in cmd.strip().splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        if (current + line).strip():
            commands.append(current + line)
        current = ""
    if current.strip():
        commands.append(current)
    return commands


class Pipeline:
    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.root = spec.root
        self.graph = Graph.build(spec)
        self.state = StateDB(self.root / STATE_DIR)
        self.data = HangarData(self.root, spec.data.repo, spec.data.ref)
        self.ctx = Context(self.root, self.state, self.data)
        self._lock: LockFile | None = None
        self.verification: dict[str, Any] = {}  # per stage, after repro(verify=True)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Pipeline:
        return cls(load_pipeline(find_pipeline(path)))

    @property
    def stages(self) -> dict[str, Stage]:
        return self.spec.stages

    @property
    def lock(self) -> LockFile:
        if self._lock is None:
            self._lock = LockFile(self.root / LOCK_FILE)
        return self._lock

    def status(self, targets: list[str] | None = None, *, single: bool = False,
               downstream: bool = False, data_commit: str | None = None) -> RunResult:
        """What `repro` would run and why; runs nothing."""
        return self.repro(targets, single=single, downstream=downstream, dry_run=True,
                          data_commit=data_commit)

    def repro(self, targets: list[str] | None = None, *, force: bool = False, single: bool = False,
              downstream: bool = False, dry_run: bool = False, keep_going: bool = False,
              jobs: int = 1, data_commit: str | None = None, run_cache: bool = True,
              verify: bool = False,
              on_start: Callable[[str, dict[str, Any]], None] | None = None,
              on_done: Callable[[StageResult], None] | None = None,
              on_recover: Callable[[int], None] | None = None) -> RunResult:
        """Bring the selected stages up to date (all by default) and record them in pipeline.lock.

        With `data_commit`, every Hangar dep of data.repo reads that commit (a branch, or a full or
        short digest) and stages that write Hangar data are held back as `pinned`. A stage that
        would run is restored from the run cache when the same inputs ran before and every
        output is in the cache (`run_cache=False` runs it anyway). `verify` reruns every selected
        stage and compares its metrics with those recorded for the same inputs: see
        `self.verification` after the run.
        """
        self._fresh_run_state()
        order = self.graph.select(targets, single=single, downstream=downstream)
        held = {n: "frozen" for n in order if self.stages[n].frozen}
        try:
            if data_commit is not None:
                self._pin(data_commit)
                held.update({n: "pinned" for n in order if n not in held and self.writes_data(n)})
            self._check_inputs(order)
            ops = _StageOps(self, force=force or verify, run_cache=run_cache and not dry_run,
                            verify=verify)
            self.verification = ops.verification
            if dry_run:
                return runner.run(order, self.graph.upstream, ops, held=held, dry_run=True,
                                  on_done=on_done)
            with ProjectLock(self.root / STATE_DIR) as mutex:
                if mutex.stale_pid and on_recover:
                    on_recover(mutex.stale_pid)
                self.lock.keep_only(set(self.stages))
                started = time.time()
                self.run_id = new_run_id(started)
                result = runner.run(order, self.graph.upstream, ops, held=held,
                                    keep_going=keep_going, jobs=jobs, on_start=on_start,
                                    on_done=on_done)
                self._record_run(started, result)
                return result
        finally:
            self.state.close()
            self.data.close()

    def _record_run(self, started: float, result: RunResult) -> None:
        """Append this run to the history: stages, data commits, params and metrics at the end."""
        try:
            params = current_params(self)
        except UserError:
            params = {}
        main = self.data.resolve(self.data.repo, None)
        status = 130 if result.interrupted else (0 if result.ok else 1)
        History(self.root / STATE_DIR).append(RunRecord(
            id=self.run_id, started=started, ended=time.time(), status=status,
            data=self.data.resolved(), data_commit=main[1] if main else None,
            stages=[r.to_dict() for r in result.stages], params=params,
            metrics=current_metrics(self)))

    def gc(self, keep_runs: int | None = None, dry_run: bool = False) -> dict[str, int]:
        """Drop run-cache entries of all but the newest `keep_runs` runs (all kept by default), and
        cache objects that no kept entry, lock entry or workspace output needs."""
        with ProjectLock(self.root / STATE_DIR):
            return self._gc(keep_runs, dry_run)

    def _gc(self, keep_runs: int | None, dry_run: bool) -> dict[str, int]:
        folder = self.root / STATE_DIR / "cache"
        objects, runs = ObjectStore(folder), RunCache(folder)
        history = History(self.root / STATE_DIR).latest(keep_runs)
        if keep_runs is None:
            kept_ids = {r for _, r, _ in runs.all()}
        else:  # the newest runs, and the earlier runs whose results they restored
            kept_ids = {r.id for r in history} | {
                s["restored_from"] for r in history for s in r.stages if s.get("restored_from")}
        entries = runs.drop_runs_except(kept_ids, dry_run)
        recs = [rec for _, r, e in runs.all() if r in kept_ids for rec in e.get("outs") or []]
        recs += [rec for e in self.lock.entries.values() for rec in e.get("outs") or [] if "path" in rec]
        for stage in self.stages.values():  # what the workspace holds now
            for out in stage.outs:
                if isinstance(out, PathOut) and (rec := out.measure(self.ctx)) is not None:
                    recs.append(rec)
        count, size = objects.collect(objects.referenced(recs), dry_run)
        self.state.close()
        return {"objects": count, "bytes": size, "run_cache_entries": entries}

    def _fresh_run_state(self) -> None:
        """Each call sees the files, params, lock and Hangar refs as they are now."""
        self.data = HangarData(self.root, self.spec.data.repo, self.spec.data.ref)
        self.ctx = Context(self.root, self.state, self.data)
        self._lock = None

    def writes_data(self, name: str) -> bool:
        return any(isinstance(o, HangarOut) for o in self.stages[name].outs)

    def _pin(self, ref: str) -> None:
        store = self.data.store(self.data.repo)
        if store is None:
            raise UserError(f"--data-commit: no Hangar repository in {self.data.path(self.data.repo)}")
        _, commit = store.resolve(ref)
        self.data.pin = commit

    def dag(self, fmt: str = "ascii") -> str:
        return {"ascii": self.graph.ascii, "mermaid": self.graph.mermaid, "dot": self.graph.dot}[fmt]()

    def _check_inputs(self, order: list[str]) -> None:
        """Fail before anything runs on a dep that is missing and that no stage produces, or bad params."""
        produced = set(self.graph.producers)
        for name in order:
            stage = self.stages[name]
            if not (self.root / stage.wdir).is_dir() and not self.graph.producers_of(PathDep(stage.wdir)):
                raise self.spec.doc.error(("stages", name, "wdir"),
                                          f"folder '{stage.wdir}' does not exist")
            for i, dep in enumerate(stage.deps):
                where = ("stages", name, "deps", i)
                if isinstance(dep, HangarDep):
                    self.data.resolve(dep.repo, dep.ref)  # the commit this run reads, from the start
                    reason = None if self.graph.producers_of(dep) else dep.missing(self.ctx)
                    if reason:
                        raise self.spec.doc.error(where, reason)
                elif (isinstance(dep, PathDep) and not self.graph.producers_of(dep)
                        and not (self.root / dep.path).exists()):
                    raise self.spec.doc.error(where, f"dependency '{dep.path}' does not exist and"
                                                     " no stage produces it")
            for params in stage.params:
                if params.file not in produced:
                    params.measure(self.ctx)


class _StageOps:
    """How the runner checks, runs and records this pipeline's stages."""

    def __init__(self, pipeline: Pipeline, *, force: bool, run_cache: bool, verify: bool = False) -> None:
        self.p = pipeline
        self.force = force
        self.run_cache = run_cache
        self.verify = verify
        self.verification: dict[str, Any] = {}
        self.measured: dict[str, Measured] = {}
        folder = pipeline.root / STATE_DIR / "cache"
        self.objects, self.runs = ObjectStore(folder), RunCache(folder)

    def check(self, name: str, upstream_would_run: list[str]) -> dict[str, Any]:
        stage = self.p.stages[name]
        deps = self.measured[name] = measure_deps(stage, self.p.ctx)
        outs = measure_outs(stage, self.p.ctx)
        reasons = stage_reasons(stage, self.p.lock.get(name), deps, outs, self.p.ctx,
                                forced=self.force)
        if upstream_would_run:
            reasons["upstream changed"] = upstream_would_run
        return reasons

    def cacheable(self, stage: Stage) -> bool:
        """Restorable from the run cache: deps to key on, only cached file or folder outputs."""
        return (bool(stage.deps or stage.params) and not stage.always_changed and bool(stage.outs)
                and all(isinstance(o, PathOut) and o.cache for o in stage.outs))

    def key(self, stage: Stage) -> str:
        measured = self.measured[stage.name]
        return run_key(stage.definition(), measured.deps, measured.params)

    def restore(self, name: str) -> str | None:
        stage = self.p.stages[name]
        if not self.run_cache or self.force or not self.cacheable(stage):
            return None
        measured = self.measured[name]
        if any(rec is None for rec in measured.deps.values()):
            return None
        for run_id, entry in self.runs.candidates(self.key(stage)):
            outs = entry.get("outs") or []
            if not all(self.objects.can_restore(rec) for rec in outs):
                continue
            if all(self.objects.restore(self.p.root / rec["path"], rec) for rec in outs):
                # the inputs as they are now (this commit), with the outputs of that earlier run
                self.p.lock.record(name, lock_entry(stage, measured, {record_key(r): r for r in outs}))
                return run_id
        return None

    def execute(self, name: str, procs: Processes) -> int:
        stage = self.p.stages[name]
        cwd = str(self.p.root / stage.wdir)
        writer = next((o for o in stage.outs if isinstance(o, HangarOut)), None)
        env = {**os.environ, **self.p.data.environment(writer), "HPIPE_STAGE": name,
               "HPIPE_ROOT": str(self.p.root)}
        if stage.cmd is not None:
            for command in shell_commands(stage.cmd):
                if code := procs.run(command, shell=True, cwd=cwd, env=env):
                    return code
            return 0
        paths = [cwd, str(self.p.root), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        argv = [sys.executable, "-m", "hangar_pipe.call", stage.target or "",
                json.dumps(stage.with_)]
        return procs.run(argv, shell=False, cwd=cwd, env=env)

    def record(self, name: str) -> None:
        stage = self.p.stages[name]
        self.p.ctx.forget_params()  # the stage may have written a params file
        for out in stage.outs:
            if isinstance(out, HangarOut):
                self.p.data.written(out.repo)  # its readers downstream see the new commit
        outs = measure_outs(stage, self.p.ctx)
        if missing := [k for k, rec in outs.items() if rec is None]:
            raise StageError(f"command succeeded but did not produce {', '.join(missing)}")
        for out in stage.outs:  # metric values go in the lock, for `hpipe metrics diff`
            if isinstance(out, PathOut) and out.role == "metric" and (rec := outs[out.key]):
                rec["metrics"] = read_metrics(self.p.root / out.path)
        entry = lock_entry(stage, self.measured[name], outs)
        self.p.lock.record(name, entry)
        for out in stage.outs:
            if isinstance(out, PathOut) and out.cache and (rec := outs[out.key]):
                self.objects.save(self.p.root / out.path, rec)
        if self.verify:
            self.verification[name] = self._compare_with_earlier(stage, entry)
        if self.cacheable(stage):
            self.runs.put(self.key(stage), self.p.run_id, entry)

    def _compare_with_earlier(self, stage: Stage, entry: dict[str, Any]) -> Any:
        """'reproduced exactly', {metric: {old, new}}, or why there is nothing to compare with."""
        earlier = self.runs.candidates(self.key(stage))
        if not earlier:
            return "no earlier run with the same inputs"
        run_id, old = earlier[0]

        def metrics(e: dict[str, Any]) -> dict[str, Any]:
            return {f"{r['path']}:{k}": v for r in e.get("outs") or [] for k, v in r.get("metrics", {}).items()}

        a, b = metrics(old), metrics(entry)
        if not a and not b:  # no metrics: compare the outputs themselves
            same = {r["path"]: r["hash"] for r in old.get("outs") or []} == {
                r["path"]: r["hash"] for r in entry.get("outs") or []}
            return "reproduced exactly" if same else {"outputs": {"old": run_id, "new": "differ"}}
        diff = {k: {"old": a.get(k), "new": b.get(k)} for k in sorted(a.keys() | b.keys())
                if a.get(k) != b.get(k)}
        return "reproduced exactly" if not diff else diff
