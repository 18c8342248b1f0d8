"""`hpipe`: a thin typer layer over `hangar_pipe.Pipeline`. Exit codes: 0 ok, 1 stage failed, 2 bad input."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline
from hangar_pipe.runner import RunResult, StageResult
from hangar_pipe.state import STATE_DIR
from hangar_pipe.status import describe

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible ML pipelines over versioned Hangar tensor data.")
_options: dict[str, Any] = {"debug": False}

_MARK = {"ran": "✓", "restored": "↺", "failed": "✗", "blocked": "✗", "interrupted": "✗", "would run": "•",
         "skipped": "·", "frozen": "·", "pinned": "·"}


def _out(text: str) -> None:
    print(text, flush=True)


def _stage_line(r: StageResult) -> str:
    head = f"{_MARK.get(r.state, ' ')} {r.name}"
    if r.state == "ran":
        return f"{head}: ran in {r.duration:.2f}s ({describe(r.reasons)})"
    if r.state == "failed":
        return f"{head}: failed after {r.duration:.2f}s: {r.error}"
    if r.state == "restored":
        return (f"{head}: restored from run {r.restored_from} in {r.duration:.2f}s"
                f" ({describe(r.reasons)})")
    if r.state == "would run":
        only_upstream = list(r.reasons) == ["upstream changed"]
        return f"{head}: {'may run' if only_upstream else 'would run'} ({describe(r.reasons)})"
    if r.state == "skipped":
        return f"{head}: up to date, skipped"
    if r.state == "blocked":
        return f"{head}: not run ({describe(r.reasons)})"
    if r.state == "pinned":
        return f"{head}: pinned (writes Hangar data; not run with --data-commit)"
    return f"{head}: {r.state}"


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
            directory: Optional[Path] = typer.Option(None, "-C", help="Run as if started in this folder.")
            ) -> None:
    _options["debug"] = debug
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise UserError(f"cannot change to folder: {exc.strerror}", file=str(directory)) from None


@app.command()
def repro(
    stages: Optional[list[str]] = typer.Argument(None, help="Stages to bring up to date (default: all)."),
    force: bool = typer.Option(False, "-f", "--force", help="Run the selected stages even if unchanged."),
    single_item: bool = typer.Option(False, "-s", "--single-item", help="Only the named stages, no upstream."),
    downstream: bool = typer.Option(False, "--downstream", help="The named stages and everything after them."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Print what would run and why; run nothing."),
    keep_going: bool = typer.Option(False, "-k", "--keep-going", help="After a failure, go on with stages that do not depend on it."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, help="Run up to N independent stages at once."),
    data_commit: Optional[str] = typer.Option(None, "--data-commit", metavar="REF",
                                              help="Read data.repo at this branch or commit; hold back stages that write Hangar data."),
    no_run_cache: bool = typer.Option(False, "--no-run-cache", help="Run stages even when the run cache could restore them."),
    verify: bool = typer.Option(False, "--verify", help="Rerun every selected stage and compare its metrics with those recorded for the same inputs; exit 1 on a difference."),
) -> None:
    """Run every stage whose inputs changed, and record what ran in pipeline.lock."""
    pipeline = Pipeline.load()
    t0 = time.monotonic()
    on_start = None if dry_run else (lambda name, reasons: _out(f"→ {name}: running ({describe(reasons)})"))
    result = pipeline.repro(stages or None, force=force, single=single_item, downstream=downstream,
                            dry_run=dry_run, keep_going=keep_going, jobs=jobs,
                            data_commit=data_commit, run_cache=not no_run_cache, verify=verify,
                            on_start=on_start,
                            on_done=lambda r: _out(_stage_line(r)),
                            on_recover=lambda pid: _out(f"note: taking over from an interrupted run"
                                                        f" (process {pid})"))
    _out(_summary(result, time.monotonic() - t0, dry_run))
    if result.interrupted:
        raise typer.Exit(130)
    if not result.ok:
        raise typer.Exit(1)
    if verify:
        differ = False
        for name, outcome in pipeline.verification.items():
            if isinstance(outcome, dict):
                differ = True
                changes = ", ".join(f"{k} {v['old']} -> {v['new']}" for k, v in outcome.items())
                _out(f"verify {name}: NOT reproduced: {changes}")
            else:
                _out(f"verify {name}: {outcome}")
        if differ:
            raise typer.Exit(1)


def _summary(result: RunResult, seconds: float, dry_run: bool) -> str:
    if dry_run:
        would = result.named("would run")
        return f"Would run {len(would)} stage(s): {', '.join(would)}." if would else "Everything is up to date."
    if result.interrupted:
        return f"Interrupted after {seconds:.2f}s; pipeline.lock holds every stage that finished."
    ran, failed = result.named("ran", "restored"), result.named("failed")
    if not ran and not failed and not result.named("blocked"):
        return "Everything is up to date."
    counts = [f"{len(result.named(s))} {s}" for s in
              ("ran", "restored", "skipped", "failed", "blocked", "frozen", "pinned") if result.named(s)]
    tail = f"; stage '{failed[0]}' failed" if failed else ""
    return f"{', '.join(counts)} in {seconds:.2f}s{tail}."


@app.command()
def status(
    stages: Optional[list[str]] = typer.Argument(None, help="Stages to check (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the reasons as JSON."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing; exit 1 if anything would run."),
    data_commit: Optional[str] = typer.Option(None, "--data-commit", metavar="REF",
                                              help="Compare against data.repo at this branch or commit."),
) -> None:
    """Say which stages would run and why."""
    result = Pipeline.load().status(stages or None, data_commit=data_commit)
    changed = {r.name: r.reasons for r in result.stages if r.state == "would run"}
    if quiet:
        raise typer.Exit(1 if changed else 0)
    if as_json:
        _out(json.dumps(changed, indent=2, default=str))
        return
    for r in result.stages:
        if r.state == "would run":
            _out(_stage_line(r))
    if not changed:
        _out("Everything is up to date.")


@app.command()
def dag(
    mermaid: bool = typer.Option(False, "--mermaid", help="Mermaid flowchart."),
    dot: bool = typer.Option(False, "--dot", help="Graphviz dot."),
) -> None:
    """Draw the stage graph (ASCII by default)."""
    _out(Pipeline.load().dag("mermaid" if mermaid else "dot" if dot else "ascii"))


@app.command()
def init() -> None:
    """Write a starter pipeline.yaml and params.yaml here and ignore .hpipe/ in git. Never overwrites."""
    from hangar_pipe.scaffold import init_project

    for message in init_project(Path.cwd()):
        _out(message)


metrics_app = typer.Typer(help="Metrics the stages write (their `metrics:` files).",
                          no_args_is_help=True)
params_app = typer.Typer(help="Params the stages read.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")
app.add_typer(params_app, name="params")


def _print_table(title: str, headers: list[str], rows: list[list[str]], md: bool) -> None:
    from hangar_pipe.reports import markdown

    if md:
        _out(markdown(headers, rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h, justify="right" if h in ("value", "old", "new", "change") else "left",
                         no_wrap=h in ("run", "file", "metric", "param"))
    for r in rows:
        table.add_row(*r)
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160).print(table)


@metrics_app.command("show")
def metrics_show(as_json: bool = typer.Option(False, "--json"), md: bool = typer.Option(False, "--md"),
                 runs: bool = typer.Option(False, "--runs", help="Metrics of every recorded run, newest first."),
                 n: int = typer.Option(20, "-n", help="With --runs: how many runs."),
                 precision: int = typer.Option(5, "--precision")) -> None:
    """Every stage's metrics, nested keys flattened to dotted names (or across runs, with --runs)."""
    from hangar_pipe.history import History, current_metrics
    from hangar_pipe.reports import fmt

    pipeline = Pipeline.load()
    if runs:
        records = History(pipeline.root / STATE_DIR).latest(n)
        if as_json:
            _out(json.dumps([{"id": r.id, "data_commit": r.data_commit, "metrics": r.metrics}
                             for r in records], indent=2))
            return
        names = sorted({f"{f}:{k}" for r in records for f, vals in r.metrics.items() for k, v in vals.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows = [[r.id, _short(r.data_commit)] + [fmt(r.metrics.get(c.split(":")[0], {}).get(c.split(":", 1)[1]), precision)
                                                  for c in names] for r in records]
        _print_table("Metrics across runs", ["run", "data commit", *names], rows, md)
        return
    table = current_metrics(pipeline)
    if as_json:
        _out(json.dumps(table, indent=2))
        return
    rows = [[f, k, fmt(v, precision)] for f, values in table.items() for k, v in values.items()]
    _print_table("Metrics", ["file", "metric", "value"], rows, md)


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "-"


@app.command()
def runs(as_json: bool = typer.Option(False, "--json"), n: int = typer.Option(20, "-n", help="How many runs."),
         md: bool = typer.Option(False, "--md")) -> None:
    """The recorded runs, newest first: when, on which data commit, what ran, key metrics."""
    from hangar_pipe.history import History
    from hangar_pipe.reports import fmt, key_metrics

    records = History(Pipeline.load().root / STATE_DIR).latest(n)
    if as_json:
        _out(json.dumps([r.to_dict() for r in records], indent=2, default=str))
        return
    rows = [[r.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)), _short(r.data_commit),
             ", ".join(r.ran) or "-", str(r.status),
             ", ".join(f"{k} {fmt(v, 4)}" for k, v in key_metrics(r.metrics).items()) or "-"]
            for r in records]
    _print_table("Runs", ["run", "when", "data commit", "ran", "exit", "key metrics"], rows, md)


def _diff_command(kind: str, a: str | None, b: str | None, as_json: bool, md: bool, show_all: bool,
                  precision: int) -> None:
    from hangar_pipe import reports

    pipeline = Pipeline.load()
    at = reports.metrics_at if kind == "metrics" else reports.params_at
    old_source, new_source = (a or "lock"), (b or "workspace")
    rows = reports.diff(at(pipeline, old_source), at(pipeline, new_source), everything=show_all)
    if as_json:
        _out(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        _out(f"No {kind} changed between {old_source} and {new_source}.")
        return
    body = [[r.file, r.name, reports.fmt(r.old, precision), reports.fmt(r.new, precision),
             reports.fmt(r.change, precision)] for r in rows]
    _print_table(f"{kind.capitalize()}: {old_source} -> {new_source}",
                 ["file", kind[:-1] if kind == "params" else "metric", "old", "new", "change"], body, md)


@metrics_app.command("diff")
def metrics_diff(a: Optional[str] = typer.Argument(None, help="Old side: lock (default), workspace, a run id, data:<commit>, or a git revision of pipeline.lock."),
                 b: Optional[str] = typer.Argument(None, help="New side (default: workspace)."),
                 as_json: bool = typer.Option(False, "--json"), md: bool = typer.Option(False, "--md"),
                 show_all: bool = typer.Option(False, "--all", help="Also unchanged metrics."),
                 precision: int = typer.Option(5, "--precision")) -> None:
    """How metrics moved: the values recorded in pipeline.lock vs the files now, by default."""
    _diff_command("metrics", a, b, as_json, md, show_all, precision)


@params_app.command("diff")
def params_diff(a: Optional[str] = typer.Argument(None, help="Old side: lock (default), workspace, a run id, data:<commit>, or a git revision of pipeline.lock."),
                b: Optional[str] = typer.Argument(None, help="New side (default: workspace)."),
                as_json: bool = typer.Option(False, "--json"), md: bool = typer.Option(False, "--md"),
                show_all: bool = typer.Option(False, "--all", help="Also unchanged params."),
                precision: int = typer.Option(5, "--precision")) -> None:
    """How params moved: the values recorded in pipeline.lock vs params files now, by default."""
    _diff_command("params", a, b, as_json, md, show_all, precision)


@app.command()
def gc(keep_runs: Optional[int] = typer.Option(None, "--keep-runs", min=0, help="Keep the run-cache results of the newest N runs only."),
       dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Say what would be removed; remove nothing.")) -> None:
    """Remove cache objects and run-cache entries that no kept run, lock entry or workspace needs."""
    freed = Pipeline.load().gc(keep_runs, dry_run)
    verb = "Would remove" if dry_run else "Removed"
    _out(f"{verb} {freed['objects']} cache objects ({freed['bytes'] / 1e6:.1f} MB) and"
         f" {freed['run_cache_entries']} run-cache entries.")


@app.command()
def plots(output: Path = typer.Option(Path("hpipe_plots"), "-o", "--out", help="Folder for the PNGs and index.html.")) -> None:
    """Render every `plots:` file to a PNG, plus an index.html showing them all."""
    from hangar_pipe.deps import PathOut
    from hangar_pipe.plots import render_all

    pipeline = Pipeline.load()
    files = [(o.path, pipeline.root / o.path) for s in pipeline.stages.values() for o in s.outs
             if isinstance(o, PathOut) and o.role == "plot" and (pipeline.root / o.path).is_file()]
    if not files:
        raise UserError("no plot files yet: declare them under `plots:` and run `hpipe repro`")
    for png in render_all(files, output):
        _out(f"wrote {png}")
    _out(f"wrote {output / 'index.html'}")


data_app = typer.Typer(help="The Hangar repository behind the pipeline.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("unlock")
def data_unlock(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="The repository folder (default: data.repo)."),
) -> None:
    """Release Hangar's writer lock left by a killed run (check that nothing is writing first)."""
    from hangar_pipe.hangar_write import describe_lock, unlock

    if repo is None:
        pipeline = Pipeline.load()
        repo = pipeline.data.path(pipeline.data.repo)
    folder = repo
    if not (folder / ".hangar").is_dir():
        raise UserError(f"no Hangar repository in {folder}")
    held = describe_lock(folder)
    if held is None:
        _out(f"The writer lock of {folder} is free; nothing to do.")
        return
    who, stale = held
    _out(f"The writer lock of {folder} is held by {who}" + (" (that process is gone)." if stale else "."))
    if not stale and who.startswith("hpipe"):
        raise UserError("that hpipe stage is still running; wait for it to finish")
    if not yes and not typer.confirm("Release it? Only do this if nothing is writing to the repository"):
        raise typer.Exit(1)
    _out(unlock(folder))


def main() -> None:
    """Entry point: bad input is one line on stderr and exit code 2, no traceback (unless --debug)."""
    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        if _options["debug"] or "--debug" in sys.argv:
            raise
        print(f"hpipe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if "NoArgsIsHelp" in type(exc).__name__:  # bare `hpipe`: the help text
            print(exc.format_message(), file=sys.stderr)
        else:  # a bad option or argument: one line, like any other bad input
            print(f"hpipe: error: {exc.format_message()} (see --help)", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
