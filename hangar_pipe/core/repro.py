"""One `repro` (or status) call on a run context: plan, check the inputs, run, record the run.

`plan` is a pure function of the graph, the spec and the options (what to consider, what to
hold back); `preflight` fails before anything runs on inputs that cannot be read; `repro` runs
the plan under the project's repro mutex and appends the run to the history.
"""

from __future__ import annotations

import time

from hangar_pipe.core.context import RunContext
from hangar_pipe.core.files import outside_link
from hangar_pipe.core.graph import Graph
from hangar_pipe.core.history import RunRecord, current_metrics, current_params
from hangar_pipe.core.kinds import record_key
from hangar_pipe.core.layout import repro_mutex, running_dir
from hangar_pipe.core.mutex import ReproMutex
from hangar_pipe.core.orphans import RunningStages
from hangar_pipe.core.runner import Runner, RunResult, State
from hangar_pipe.core.spec import PipelineSpec
from hangar_pipe.core.stage_ops import StageOps
from hangar_pipe.errors import UserError


def plan(graph: Graph, spec: PipelineSpec, targets: list[str] | None, *, single: bool = False,
         downstream: bool = False, pinned: bool = False) -> tuple[list[str], dict[str, State]]:
    """The stages to consider in order, and those held back: frozen ones, and with a pinned data
    commit the ones that write data."""
    order = graph.select(targets, single=single, downstream=downstream)
    held: dict[str, State] = {}
    for name in order:
        stage = spec.stages[name]
        if stage.frozen:
            held[name] = "frozen"
        elif pinned and any(o.writes is not None for o in stage.outs):
            held[name] = "pinned"
    return order, held


def preflight(ctx: RunContext, order: list[str]) -> None:
    """Fail before anything runs on a missing wdir or one outside the project (through a link), a
    dep that cannot be read and that no stage produces, an output that cannot be written (or is
    outside the project), or bad params."""
    spec, graph, ws = ctx.spec, ctx.graph, ctx.workspace
    produced = set(graph.producers)
    for name in order:
        stage = spec.stages[name]
        if not (ctx.root / stage.wdir).is_dir() and not graph.producers_of_path(stage.wdir) - {name}:
            raise spec.doc.error(("stages", name, "wdir"), f"folder '{stage.wdir}' does not exist")
        if link := outside_link(ctx.root, stage.wdir):
            raise spec.doc.error(("stages", name, "wdir"), f"folder '{stage.wdir}' is outside the"
                                                          f" project: {link}")
        for item in (*stage.deps, *stage.outs):
            if reason := item.missing(ws, graph.produces):
                raise spec.doc.error(stage.declared.get(item, ("stages", name)), reason)
        for params in stage.params:
            if params.file not in produced:
                params.measure(ws)


def check_request(ctx: RunContext) -> None:
    """Refuse what cannot mean what it says: an empty --data-commit, and a pipeline.yaml with no
    stages while pipeline.lock records some (an emptied file would otherwise be "up to date")."""
    if ctx.options.data_commit is not None and not ctx.options.data_commit.strip():
        raise UserError("--data-commit: expected a branch or commit, got an empty string")
    if not ctx.spec.stages and ctx.lock.entries:
        names = sorted(ctx.lock.entries)
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UserError(f"{ctx.spec.file} defines no stages (pipeline.lock records {len(names)}:"
                        f" {listed}); add stages, or delete pipeline.lock to forget them")


def repro(ctx: RunContext, targets: list[str] | None = None) -> RunResult:
    """Bring the targets (all by default) up to date, as the options say; a dry run decides only."""
    t0 = time.monotonic()
    options = ctx.options
    check_request(ctx)
    order, held = plan(ctx.graph, ctx.spec, targets, single=options.single,
                       downstream=options.downstream, pinned=options.data_commit is not None)
    if options.data_commit is not None:
        ctx.data.pin(options.data_commit)
    preflight(ctx, order)
    running = None if options.dry_run else RunningStages(running_dir(ctx.root))
    ops = StageOps(ctx)
    runner = Runner(order, ctx.graph.upstream, ops, ctx.reporter, held=held,
                    dry_run=options.dry_run, keep_going=options.keep_going, jobs=options.jobs,
                    registry=running)
    try:
        result = _run(ctx, runner, running, order)
    finally:
        ops.close()
    result.seconds = time.monotonic() - t0
    ctx.reporter.run_done(result)
    return result


def _run(ctx: RunContext, runner: Runner, running: RunningStages | None, order: list[str]) -> RunResult:
    """Run the stages; unless a dry run, under the repro mutex, after stopping orphans, recorded."""
    if running is None:
        ctx.reporter.run_started(None, order)
        return runner.run()
    with ReproMutex(repro_mutex(ctx.root)) as mutex:
        if mutex.stale_pid:
            ctx.reporter.recovered(mutex.stale_pid)
        for orphan in running.stop_orphans():
            ctx.reporter.warning(f"stopped orphaned stage '{orphan.stage}' (process group"
                                 f" {orphan.pgid}) left running by a killed run")
        ctx.begin()
        ctx.lock.keep_only(set(ctx.spec.stages))
        ctx.reporter.run_started(ctx.run_id, order)
        result = runner.run()
        record_run(ctx, result, order)
    return result


def record_run(ctx: RunContext, result: RunResult, order: list[str]) -> None:
    """Append this run to the history: stages, data commits, params and metrics at the end (not
    those of stages it selected that failed or were not reached: their files are older)."""
    stages = ctx.spec.stages.values()
    try:
        params = current_params(stages, ctx.workspace)
    except UserError:
        params = {}
    status = 130 if result.interrupted else (0 if result.ok else 1)
    broken = set(order) - set(result.named("ran", "restored", "skipped", "frozen", "pinned"))
    ctx.history.append(RunRecord(
        id=ctx.run_id, started=ctx.started, ended=time.time(), status=status,
        data=ctx.data.commits(), data_commit=ctx.data.main_commit(),
        stages=[r.to_dict() for r in result.stages], params=params,
        metrics=current_metrics([s for s in stages if s.name not in broken], ctx.workspace),
        tags=dict(ctx.options.tags), outputs=_outputs(ctx, broken)))


def _outputs(ctx: RunContext, broken: set[str]) -> dict[str, str]:
    """The hash of every cached output as the lock has it at the end (stages that did not finish
    left out): what `hpipe plots --runs` reads back from the object cache."""
    found: dict[str, str] = {}
    for name, entry in ctx.lock.entries.items():
        if name not in broken:
            found.update((record_key(rec), rec["hash"]) for rec in entry.get("outs") or []
                         if isinstance(rec.get("hash"), str))
    return found


def commit(ctx: RunContext, targets: list[str] | None = None) -> list[str]:
    """Record the selected stages (all by default, without their upstream) in pipeline.lock as the
    workspace is now, as if they had run: DVC's `commit`. Returns the stages that changed."""
    check_request(ctx)
    order = ctx.graph.select(targets, single=True)
    preflight(ctx, order)
    ops, committed = StageOps(ctx), []
    with ReproMutex(repro_mutex(ctx.root)):
        ctx.begin()
        for name in order:
            reasons, _ = ops.check(name, [])
            if not reasons:
                continue
            missing = [o.key for o in ctx.spec.stages[name].outs if o.measure(ctx.workspace) is None]
            if missing:
                raise UserError(f"cannot record stage '{name}': output {', '.join(missing)} is missing")
            ops.commit(name)
            committed.append(name)
    return committed
