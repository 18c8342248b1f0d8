"""`hpipe exp run`, `show`, `apply` and `remove`: sweeps over params and data commits (hangar_pipe.experiments)."""

import json
import os

from hangar_pipe.cli.app import arg, at_least, command, group, opt
from hangar_pipe.cli.console import ConsoleReporter, Style, out, summary
from hangar_pipe.cli.results import FORMATS, _format, _print_columns, precision
from hangar_pipe.errors import UserError
from hangar_pipe.experiments.plan import Point
from hangar_pipe.experiments.records import PointRecord
from hangar_pipe.pipeline import Pipeline

EXP = group("exp", "Experiments: run the pipeline over params and data commits, compare, apply.")


class _Lines:
    """The console lines of `exp run`: one per point as it starts and ends."""

    def point_started(self, point: Point) -> None:
        out(f"→ {point.id}: {point.label()}")

    def point_done(self, record: PointRecord, before: bool) -> None:
        if before:
            out(f"· {record.id}: {record.label}: done before ({record.run_id})")
        elif record.state == "done":
            counts = {s: sum(v == s for v in record.stages.values()) for s in ("ran", "restored")}
            what = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to do"
            out(f"✓ {record.id}: {record.label}: done in {record.seconds:.1f}s ({what})")
        else:
            out(f"✗ {record.id}: {record.label}: failed: {record.error} (log: {os.path.relpath(record.log)})")


@command(EXP, "run", args=[
    arg("stages", nargs="*", metavar="STAGE", help="Stages to reproduce at each point (default: all)."),
    opt("-S", "--set-param", dest="params", action="append", default=[], metavar="[FILE:]KEY=VALUES",
        help="A params value, or a comma list of them (a grid axis); repeatable."),
    opt("--random", type=at_least(1), metavar="K",
        help="Sample K points (ranges: range(LO,HI[,log]), randint(LO,HI))."),
    opt("--seed", type=int, default=0, help="With --random: the sampler's seed (default: 0)."),
    opt("--data-commit", dest="data_commits", metavar="REF[,REF...]",
        help="Data commits (or branches) as one more axis (default: the head of data.ref)."),
    opt("--name", help="The experiment's name (default: one made from the stages and points)."),
    opt("-j", "--jobs", type=at_least(1), default=1, metavar="N",
        help="Run N points at once, each on its share of the CPUs."),
    opt("--fail-fast", flag=True, help="Stop at the first failed point (default: run the others)."),
    opt("-f", "--force", flag=True, help="Run every stage of every point, even when unchanged."),
])
def exp_run(stages: list[str], params: list[str], random: int | None, seed: int, data_commits: str | None,
            name: str | None, jobs: int, fail_fast: bool, force: bool) -> int:
    """Run the pipeline at each point of a grid (or a random sample) of params and data commits.

    Each point runs in its own copy of the project under .hpipe/exps/, so params.yaml, the outputs
    and pipeline.lock here are not touched; points share the caches, so a point seen before is
    restored, not rerun. Running the same command again runs only the points not done yet.

    Example: `hpipe exp run -S train.lr=0.1,0.01 -S train.batch_size=32,64 -j 2`.
    """
    from hangar_pipe.experiments import plan, records, runner

    pipeline = Pipeline.load()
    pipeline.graph.select(stages or None)  # (unknown stages: an error before anything starts)
    axes = [plan.parse_axis(text) for text in params]
    commits = _data_commits(pipeline, data_commits)
    _check_data(pipeline, commits)
    points = plan.plan(axes, commits, random, seed)
    exp = runner.Experiment(name or plan.experiment_name(stages, points), points, stages, jobs,
                            fail_fast, force)
    records.check_name(exp.name)
    out(f"Experiment {exp.name}: {len(points)} point{'s' * (len(points) != 1)}"
        f"{f', {jobs} at once' if jobs > 1 else ''}")
    found = runner.run(pipeline, exp, _Lines())
    failed = [r for r in found if r.state != "done"]
    out(f"{len(found) - len(failed)} of {len(points)} points done"
        f"{f', {len(failed)} failed' if failed else ''}. See: hpipe exp show --name {exp.name}")
    return 1 if failed or len(found) < len(points) else 0


def _data_commits(pipeline: Pipeline, given: str | None) -> list[str | None]:
    """The data commits to run at, as digests: the given refs, else the head of data.ref (None:
    the pipeline reads no Hangar data)."""
    if given is None:
        return [pipeline.data_commit_of(None)]
    refs = [r.strip() for r in given.split(",") if r.strip()]
    if not refs:
        raise UserError("--data-commit: expected REF[,REF...]")
    return [pipeline.data_commit_of(ref) for ref in refs]


def _check_data(pipeline: Pipeline, commits: list[str | None]) -> None:
    """Points read Hangar data at a pinned commit and never write it: refuse what would break that."""
    writers = [s.name for s in pipeline.stages.values() if any(o.writes is not None for o in s.outs)]
    if None in commits and writers:
        raise UserError(f"no data commit to run the points at yet (stage '{writers[0]}' writes Hangar"
                        " data, and points never do): run `hpipe repro` first")
    repo = pipeline.spec.data.repo
    if repo == ".." or repo.startswith("../"):
        raise UserError(f"data.repo '{repo}' is outside the project: experiments read data only from a"
                        " repository inside it")


@command(EXP, "show", args=[
    *FORMATS, opt("--name", help="Only this experiment's points."),
    opt("--only-changed", flag=True, help="Leave out the columns that are the same for every point."),
    opt("--sort-by", metavar="METRIC", help="Sort by this metric (its name as shown, or FILE:NAME)."),
    opt("--sort-order", choices=["asc", "desc"], default="asc", help="With --sort-by (default: asc)."),
    precision(5)])
def exp_show(as_json: bool, md: bool, as_csv: bool, name: str | None, only_changed: bool,
             sort_by: str | None, sort_order: str, precision: int) -> None:
    """The points of the experiments: overrides, data commit, state and metrics.

    Example: `hpipe exp show --only-changed --sort-by accuracy --sort-order desc`.
    """
    from hangar_pipe.experiments import records, show

    form = _format(as_json, md, as_csv)
    points = show.sort_points(records.load_all(Pipeline.load().root, name), sort_by, sort_order == "desc")
    if form == "json":
        out(json.dumps([p.to_dict() for p in points], indent=2, default=str))
        return
    _print_columns(show.columns(points, precision, only_changed), form,
                   "No experiment points yet (hpipe exp run -S KEY=VALUES runs some).")


@command(EXP, "apply", args=[arg("point", metavar="ID", help="The point (its id, or a unique prefix).")])
def exp_apply(point: str) -> int:
    """Write a point's params into the params files and restore its outputs here.

    Its results come back from the caches; the next `hpipe repro` has nothing to do.

    Example: `hpipe exp apply 3fa2c1d0`.
    """
    from hangar_pipe.experiments import records
    from hangar_pipe.experiments.apply import apply

    pipeline = Pipeline.load()
    record = records.find(pipeline.root, point)
    if record.state != "done":
        raise UserError(f"point {record.id} failed ({record.error}); nothing to apply")
    reporter = ConsoleReporter(pipeline.stages, Style.for_terminal(), quiet=True)
    result, pinned = apply(pipeline, record, reporter)
    out(summary(result, False))
    files = ", ".join(record.files) or "no params files"
    out(f"Applied {record.id} ({record.label}): {files} written, outputs restored.")
    if pinned:
        out(f"Its data commit is not the data head: `hpipe repro --data-commit {pinned}` has nothing"
            " to do; a plain `hpipe repro` reads the head.")
    return 0 if result.ok else 1


@command(EXP, "remove", args=[
    arg("points", nargs="*", metavar="ID", help="Points to remove (ids or unique prefixes)."),
    opt("--name", help="Remove this whole experiment.")])
def exp_remove(points: list[str], name: str | None) -> None:
    """Remove experiment points (their records and logs), or a whole experiment with --name.

    Their results stay in the caches until `hpipe gc`.

    Example: `hpipe exp remove --name exp-1a2b3c`.
    """
    from hangar_pipe.experiments import records

    if bool(points) == (name is not None):
        raise UserError("give point ids or --name (one of them)")
    removed = records.remove(Pipeline.load().root, points, name)
    out(f"Removed {len(removed)} point{'s' * (len(removed) != 1)}"
        f"{f' (experiment {name})' if name else ''}.")

