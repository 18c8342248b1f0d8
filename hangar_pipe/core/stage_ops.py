"""How one run checks, restores, launches and records its stages: the runner's `StageOps`, on a `RunContext`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar_pipe.core.context import RunContext
from hangar_pipe.core.decisions import (
    Measured,
    lock_entry,
    measure_deps,
    measure_outs,
    output_drift,
    stage_reasons,
)
from hangar_pipe.core.kinds import Record, record_key, recorded_metrics
from hangar_pipe.core.runcache import run_key, run_material
from hangar_pipe.core.runner import Job, Processes, StageError, Verify
from hangar_pipe.core.spec import BUILTIN_EXPLAIN, BUILTIN_INCREMENTAL, Stage

# core.threads and core.stage_state are imported where a stage is run or restored, not on the
# no-op path (each module and dataclass defined costs start-up: docs/benchmarks.md, issue 13.6)
if TYPE_CHECKING:
    from hangar_pipe.core.warm import WarmWorker

CALL_MODULE = "hangar_pipe.core.call"  # runs a `uses:` callable in its own process


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


def cacheable(stage: Stage) -> bool:
    """Restorable from the run cache: deps to key on, and only outputs the object cache keeps
    (none that persists from one run to the next)."""
    return (bool(stage.deps or stage.params) and not stage.always_changed and bool(stage.outs)
            and all(o.cached and not o.persists for o in stage.outs))


class StageOps:
    """Everything stage-specific the runner does, on one run's context (all on the main thread;
    only the job `launch` returns runs on a pool thread)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        options = ctx.options
        self.force = options.force or options.verify
        self.use_run_cache = options.run_cache and not options.dry_run and not self.force
        self.measured: dict[str, Measured] = {}
        self.threads: dict[str, int] = {}  # the built-in stages launched, and their thread count
        self.warm: WarmWorker | None = None  # started with the first built-in stage found out of date
        self.verifying: set[str] = set()  # up-to-date stages of BUILTIN_INCREMENTAL under --verify

    def close(self) -> None:
        """End what the run started for its stages (the warm worker)."""
        if self.warm is not None:
            self.warm.close()

    def stage(self, name: str) -> Stage:
        return self.ctx.spec.stages[name]

    def check(self, name: str, upstream_would_run: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        stage, ws, entry = self.stage(name), self.ctx.workspace, self.ctx.lock.get(name)
        deps = self.measured[name] = measure_deps(stage, ws)
        outs = measure_outs(stage, ws)
        # --verify reruns stages to compare their results, but a writer's result is a new commit
        # (a built-in stage that checks its own data outputs is rerun, and commits nothing)
        verifies = self.ctx.options.verify and stage.uses in BUILTIN_INCREMENTAL
        writer_under_verify = (self.ctx.options.verify and not verifies
                               and any(o.writes is not None for o in stage.outs))
        forced = self.force and not (writer_under_verify and not self.ctx.options.force)
        reasons = stage_reasons(stage, entry, deps, outs, ws, forced=forced)
        if reasons and stage.cmd is None and not self.ctx.options.dry_run:
            self._warm_worker()  # its imports start now, beside the explanation and the run cache
        # a stage that checks its own outputs does so when it is up to date; out of date, it runs
        if verifies and not self.ctx.options.force and set(reasons) == {"forced"} and not upstream_would_run:
            self.verifying.add(name)
        else:
            self.verifying.discard(name)
        if reasons and stage.uses in BUILTIN_EXPLAIN:
            reasons = _explainer(BUILTIN_EXPLAIN[stage.uses])(stage, reasons, deps, ws)
        if upstream_would_run:
            reasons["upstream changed"] = upstream_would_run
        notes = output_drift(stage, entry, outs, ws)
        if writer_under_verify:
            notes["--verify skips writers of Hangar data"] = True
        return reasons, notes

    def exclusive(self, name: str) -> set[str]:
        """The data repositories the stage writes: one writer at a time each."""
        return {f"data:{o.writes.repo}" for o in self.stage(name).outs if o.writes is not None}

    def restore(self, name: str) -> str | None:
        """Put back the outputs of an earlier run with the same inputs; that run's id (`lock` for
        pipeline.lock's own entry), or None."""
        from hangar_pipe.core import threads
        from hangar_pipe.core.stage_state import drop

        stage, measured = self.stage(name), self.measured[name]
        if not self.use_run_cache or not cacheable(stage):
            return None
        if any(rec is None for rec in measured.deps.values()):
            return None
        ws = self.ctx.workspace
        outs = {o.key: o for o in stage.outs}
        for run_id, entry in self._candidates(stage, measured):
            recs = {record_key(r): r for r in entry.get("outs") or []}
            if recs.keys() != outs.keys() or not self._objects_here(list(recs.values())):
                continue
            if all((path := outs[k].file(ws)) is not None and self.ctx.objects.restore(path, r, name, ws.root)
                   for k, r in recs.items()):
                # the inputs as they are now (this commit), with the outputs of that earlier run
                restored = lock_entry(stage, measured, dict(recs))
                if (count := threads.recorded_count(entry)) is not None:
                    restored["threads"] = count
                self.ctx.lock.record(name, restored)
                self._keep_out_of_git(stage)
                drop(ws.root, name, run_key(stage, measured))  # a killed run's state: not needed now
                return run_id
        return None

    def _candidates(self, stage: Stage, measured: Measured) -> list[tuple[str, dict[str, Any]]]:
        """Earlier results for these inputs, newest first: the run cache's, then pipeline.lock's own
        entry when it was recorded from the same inputs (a fresh clone has only that), then the
        remote's (`repro --pull`)."""
        key = run_key(stage, measured)
        found = self.ctx.run_cache.candidates(key)
        entry = self.ctx.lock.get(stage.name)
        if entry and _same_definition(stage, entry) \
                and (recorded := recorded_inputs(entry)).deps.keys() == {d.key for d in stage.deps} \
                and run_key(stage, recorded) == key:
            found.append(("lock", entry))
        if self.ctx.fetcher is not None:
            found += self.ctx.fetcher.entries(key)
        return found

    def _objects_here(self, recs: list[Record]) -> bool:
        """Whether the object cache can restore these outputs (after fetching them with `--pull`)."""
        if all(self.ctx.objects.can_restore(r) for r in recs):
            return True
        return self.ctx.fetcher is not None and self.ctx.fetcher.objects(recs)

    def launch(self, name: str) -> Job:
        """The stage's working folder, environment and commands, resolved now (main thread); the
        returned job runs them on a pool thread."""
        from hangar_pipe.core import threads
        from hangar_pipe.core.stage_state import prepare

        stage, ctx = self.stage(name), self.ctx
        for out in stage.outs:  # a run starts from no outputs (but persistent ones), as from scratch
            out.clean(ctx.workspace)
        cwd = str(ctx.root / stage.wdir)
        writes = next((o.writes for o in stage.outs if o.writes is not None), None)
        state = prepare(ctx.root, name, run_key(stage, self.measured[name]), fresh=not ctx.options.resume)
        env = {**os.environ, **ctx.data.environment(writes), "HPIPE_STAGE": name,
               "HPIPE_ROOT": str(ctx.root), "HPIPE_STATE_DIR": str(state)}
        if stage.cmd is None:
            env.update(self._stage_options(stage, state))
            paths = [cwd, str(ctx.root), *filter(None, [env.get("PYTHONPATH")])]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
            env[threads.ENV] = str(self._threads(stage))
            args = [stage.target or "", json.dumps(stage.with_)]
            argv = [sys.executable, "-m", CALL_MODULE, *args]
            warm = self._warm_worker()
            if warm is None:
                return lambda procs: procs.run(argv, shell=False, cwd=cwd, env=env, stage=name)
            needs = [(stage.target or "").partition(":")[0]]  # its module, when the zygote imports it ahead
            return lambda procs: procs.run(argv, shell=False, cwd=cwd, env=env, stage=name, warm=lambda: warm.spawn(
                CALL_MODULE, args, env=env, cwd=cwd, stdout=procs.stdout, needs=needs))
        commands = shell_commands(stage.cmd)

        def run_commands(procs: Processes) -> int:
            for command in commands:
                if code := procs.run(command, shell=True, cwd=cwd, env=env, stage=name):
                    return code
            return 0

        return run_commands

    def _stage_options(self, stage: Stage, state: Path) -> dict[str, str]:
        """What a built-in stage may act on: `-f`, `--verify` and `-j N` (HPIPE_FORCE, HPIPE_VERIFY,
        HPIPE_JOBS); for an incremental one, what its run key is made of (HPIPE_STAGE_INPUTS: a JSON
        file in its resume folder, which params could make too big for an environment variable;
        the stage removes it once read)."""
        options = self.ctx.options
        env = {"HPIPE_STAGE_INPUTS": ""}
        if stage.uses in BUILTIN_INCREMENTAL:
            from hangar_pipe.core.atomic import atomic_write

            inputs = state / "stage-inputs.json"
            material = run_material(stage, self.measured[stage.name])
            atomic_write(inputs, json.dumps(material, sort_keys=True, default=str).encode())
            env["HPIPE_STAGE_INPUTS"] = str(inputs)
        env["HPIPE_FORCE"] = "1" if options.force else ""  # (set either way: never inherited)
        env["HPIPE_VERIFY"] = "1" if stage.name in self.verifying else ""
        env["HPIPE_JOBS"] = str(options.jobs)
        return env

    def _threads(self, stage: Stage) -> int:
        """The stage's thread count (core.threads), said once per run, and when it is not the usual."""
        from hangar_pipe.core import threads

        recorded = next(((run_id, n) for run_id, entry in self._candidates(stage, self.measured[stage.name])
                         if (n := threads.recorded_count(entry)) is not None), None)
        options = self.ctx.options
        choice = threads.choose(options.threads, options.jobs, recorded)
        if choice.note:
            self.ctx.reporter.note(f"{stage.name}: {choice.note}")
        elif not self.threads:
            self.ctx.reporter.note(f"built-in stages use {choice.count} CPU thread{'s' * (choice.count > 1)}"
                                   f" each ({choice.why}; --threads N sets it)")
        self.threads[stage.name] = choice.count
        return choice.count

    def _warm_worker(self) -> WarmWorker | None:
        """The run's warm worker, started now (on the main thread) unless running or unsupported."""
        if self.warm is None:
            from hangar_pipe.core.warm import WarmWorker, supported

            if not supported():
                return None
            self.warm = WarmWorker(self._warm_up())
        self.warm.start()
        return self.warm

    def _warm_up(self) -> list[str]:
        """What the warm worker imports ahead: Hangar and the pipeline's built-in stages (torch with
        train and evaluate), in pipeline order; a user's own modules are imported by its stages."""
        targets = [s.target for s in self.ctx.spec.stages.values() if s.cmd is None and s.target]
        modules = [t.partition(":")[0] for t in targets if t.startswith("hangar_pipe.")]
        return list(dict.fromkeys(["hangar_pipe.hangar.compat", *modules])) if modules else []

    def record(self, name: str) -> Verify:
        """Measure what the stage wrote, record it in the lock and the caches; the verify outcome."""
        from hangar_pipe.core.stage_state import drop

        stage, ctx, ws = self.stage(name), self.ctx, self.ctx.workspace
        ws.forget_params()  # the stage may have written a params file
        for out in stage.outs:
            if out.writes is not None:
                ctx.data.written(out.writes)  # its readers downstream see the new commit
        previous = ctx.lock.get(name)
        entry = self.commit(name)
        key = run_key(stage, self.measured[name])
        outcome = None
        if ctx.options.verify:  # with the run cache's runs for these inputs, else the lock's own
            earlier = ctx.run_cache.candidates(key)
            if not earlier and previous and run_key(stage, recorded_inputs(previous)) == key:
                earlier = [("lock", previous)]
            outcome = compare_with_earlier(earlier, entry, stage)
        if cacheable(stage):
            ctx.run_cache.put(key, ctx.run_id, entry)
        drop(ctx.root, name, key)  # recorded: a later run starts from scratch
        return outcome

    def commit(self, name: str) -> dict[str, Any]:
        """Record the stage as its workspace is now (measured by `check`): lock entry and output
        cache. `hpipe commit` calls it alone; `record` calls it after the stage ran."""
        stage, ctx, ws = self.stage(name), self.ctx, self.ctx.workspace
        outs = self._written(stage)
        entry = lock_entry(stage, self.measured[name], dict(outs))
        if name in self.threads:
            entry["threads"] = self.threads[name]
        ctx.lock.record(name, entry)
        for out in stage.outs:
            if out.cached and (path := out.file(ws)) is not None:
                ctx.objects.save(path, outs[out.key], name)
        self._keep_out_of_git(stage)
        return entry

    def _keep_out_of_git(self, stage: Stage) -> None:
        """Once a stage is recorded, what of it hpipe keeps goes in .gitignore (see core.gitignore)."""
        from hangar_pipe.core.gitignore import ensure_ignored

        ws = self.ctx.workspace
        ensure_ignored(ws.root, [p for item in (*stage.deps, *stage.outs) for p in item.ignored(ws)])

    def _written(self, stage: Stage) -> dict[str, Record]:
        """The stage's outputs as it left them, as they go into the lock; StageError if one is missing."""
        ws = self.ctx.workspace
        outs = measure_outs(stage, ws)
        if missing := [k for k, rec in outs.items() if rec is None]:
            raise StageError(f"command succeeded but did not produce {', '.join(missing)}")
        return {o.key: o.lock_record(outs[o.key] or {}, ws) for o in stage.outs}


def _identities(entry: dict[str, Any], stage: Stage | None) -> dict[str, Any]:
    kinds = {o.key: o for o in stage.outs} if stage is not None else {}
    return {(k := record_key(r)): kinds[k].identity(r) if k in kinds else r for r in entry.get("outs") or []}


def _explainer(target: str) -> Any:
    """A built-in stage's explain hook ("module:function"), imported on first use."""
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _same_definition(stage: Stage, entry: dict[str, Any]) -> bool:
    """Whether a lock entry was recorded from the stage as it is defined now (command, callable,
    `with`, wdir): the run key takes the definition from the stage, not from the entry."""
    return {k: v for k, v in entry.items() if k not in ("deps", "params", "outs", "threads")} == stage.definition()


def recorded_inputs(entry: dict[str, Any]) -> Measured:
    """The inputs a lock entry was recorded with, as `measure_deps` gives them now."""
    return Measured({record_key(r): r for r in entry.get("deps") or []},
                    {f: dict(v) for f, v in (entry.get("params") or {}).items()})


def compare_with_earlier(earlier: list[tuple[str, dict[str, Any]]], entry: dict[str, Any],
                         stage: Stage | None = None) -> Verify:
    """'reproduced exactly', {metric: {old, new}}, or why there is nothing to compare with. With
    no metrics the outputs are compared by what each kind says identifies them (a Hangar out's
    column fingerprints, not the commit that holds them)."""
    if not earlier:
        return "no earlier run with the same inputs"
    run_id, old = earlier[0]

    def metrics(e: dict[str, Any]) -> dict[str, Any]:
        return {f"{record_key(r)}:{k}": v for r in e.get("outs") or [] for k, v in (recorded_metrics(r) or {}).items()}

    a, b = metrics(old), metrics(entry)
    if not a and not b:  # no metrics: compare the outputs themselves
        same = _identities(old, stage) == _identities(entry, stage)
        return "reproduced exactly" if same else {"outputs": {"old": run_id, "new": "differ"}}
    diff = {k: {"old": a.get(k), "new": b.get(k)} for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)}
    return diff or "reproduced exactly"
