"""`hpipe repro`, `status`, `dag` and `init`: bring the pipeline up to date, say what would run, draw it."""

import json
from pathlib import Path
from typing import Annotated

import typer

from hangar_pipe.cli.app import app
from hangar_pipe.cli.console import ConsoleReporter, Style, out, stage_line, summary
from hangar_pipe.core.context import ReproOptions
from hangar_pipe.core.reporter import JsonLinesReporter, Reporter
from hangar_pipe.core.runner import RunResult
from hangar_pipe.pipeline import Pipeline

Stages = Annotated[list[str] | None, typer.Argument(help="Stages (or output paths) to consider (default: all).")]
DataCommit = Annotated[str | None, typer.Option(
    "--data-commit", metavar="REF",
    help="Read data.repo at this branch or commit; hold back stages that write Hangar data.")]


Force = Annotated[bool, typer.Option("-f", "--force", help="Run the selected stages even if unchanged.")]
Single = Annotated[bool, typer.Option("-s", "--single-item", help="Only the named stages, no upstream.")]
Downstream = Annotated[bool, typer.Option("--downstream", help="The named stages and everything after them.")]
DryRun = Annotated[bool, typer.Option("-n", "--dry-run", help="Print what would run and why; run nothing.")]
KeepGoing = Annotated[bool, typer.Option("-k", "--keep-going",
                                         help="After a failure, go on with stages that do not depend on it.")]
Jobs = Annotated[int, typer.Option("-j", "--jobs", min=1, help="Run up to N independent stages at once.")]
NoRunCache = Annotated[bool, typer.Option("--no-run-cache",
                                          help="Run stages even when the run cache could restore them.")]
Verify = Annotated[bool, typer.Option("--verify", help="Rerun every selected stage and compare its metrics with"
                                                       " those recorded for the same inputs; exit 1 on a difference.")]
Pull = Annotated[bool, typer.Option("--pull", help="Fetch from the remote what a stage needs and this machine"
                                                  " lacks: outputs, run-cache results, data.")]
RemoteName = Annotated[str | None, typer.Option("-r", "--remote", help="With --pull: the remote (default: the"
                                                                      " default remote).")]
Threads = Annotated[int | None, typer.Option("--threads", min=1, envvar="HPIPE_THREADS",
                                            help="CPU threads for each built-in stage (default: as recorded"
                                                 " for the same inputs, else the cores / -j).")]
NoResume = Annotated[bool, typer.Option("--no-resume", help="Start stages over: delete what a killed run left"
                                                           " them to resume from (their HPIPE_STATE_DIR).")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Every reason in full, however long.")]
JsonEvents = Annotated[bool, typer.Option("--json", help="Stream events as JSON lines on stdout (stage commands'"
                                                         " own output goes to stderr).")]


@app.command()
def repro(stages: Stages = None, force: Force = False, single_item: Single = False,
          downstream: Downstream = False, dry_run: DryRun = False, keep_going: KeepGoing = False,
          jobs: Jobs = 1, data_commit: DataCommit = None, no_run_cache: NoRunCache = False,
          verify: Verify = False, as_json: JsonEvents = False, verbose: Verbose = False,
          quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only failures.")] = False,
          pull: Pull = False, remote: RemoteName = None, no_resume: NoResume = False,
          threads: Threads = None) -> None:
    """Run every stage whose inputs changed, and record what ran in pipeline.lock.

    Example: `hpipe repro train` brings train and what it needs up to date.
    """
    pipeline = Pipeline.load()
    options = ReproOptions(force=force, single=single_item, downstream=downstream, dry_run=dry_run,
                           keep_going=keep_going, jobs=jobs, data_commit=data_commit,
                           run_cache=not no_run_cache, verify=verify, pull=pull, remote=remote,
                           resume=not no_resume, threads=threads)
    reporter: Reporter = (JsonLinesReporter() if as_json else
                          ConsoleReporter(pipeline.stages, Style.for_terminal(verbose), quiet=quiet))
    result = pipeline.repro(stages or None, options, reporter)
    if not as_json and not (quiet and result.ok):
        out(summary(result, dry_run))
        if verify and result.ok:
            _print_verify(result)
    if result.interrupted:
        raise typer.Exit(130)
    if not result.ok or (verify and any(isinstance(r.verify, dict) for r in result.stages)):
        raise typer.Exit(1)


def _print_verify(result: RunResult) -> None:
    for r in result.stages:
        if isinstance(r.verify, dict):
            changes = ", ".join(f"{k} {v['old']} -> {v['new']}" for k, v in r.verify.items())
            out(f"verify {r.name}: NOT reproduced: {changes}")
        elif r.verify is not None:
            out(f"verify {r.name}: {r.verify}")


@app.command()
def status(
    stages: Stages = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reasons as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing; exit 1 if anything would run.")] = False,
    data_commit: DataCommit = None,
    verbose: Verbose = False,
) -> None:
    """Say which stages would run and why (-v: every stage, every reason in full).

    Example: `hpipe status --json | jq .train` shows train's reasons as data.
    """
    pipeline = Pipeline.load()
    result = pipeline.status(stages or None, data_commit=data_commit)
    changed = {r.name: r.reasons for r in result.stages if r.state == "would run"}
    if quiet:
        raise typer.Exit(1 if changed else 0)
    if as_json:
        out(json.dumps(changed, indent=2, default=str))
        return
    style = Style.for_terminal(verbose)
    for r in result.stages:
        if r.state in ("would run", "pinned") or r.notes or verbose:
            out(stage_line(r, pipeline.stages[r.name], style))
    if not changed:
        out("Everything is up to date.")


@app.command()
def commit(stages: Annotated[list[str] | None, typer.Argument(help="Stages to record (default: all).")] = None
           ) -> None:
    """Record stages in pipeline.lock as the workspace is now, without running them.

    Example: `hpipe commit train` after fixing a typo in a script that changes no output.
    """
    committed = Pipeline.load().commit(stages or None)
    out(f"Recorded {', '.join(committed)} as the workspace is now." if committed else "Nothing to record.")


@app.command()
def dag(
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid flowchart.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot.")] = False,
) -> None:
    """Draw the stage graph (ASCII by default).

    Example: `hpipe dag --mermaid > dag.md` for a diagram GitHub renders.
    """
    out(Pipeline.load().dag("mermaid" if mermaid else "dot" if dot else "ascii"))


@app.command()
def init(
    hangar: Annotated[bool, typer.Option("--hangar", help="The Hangar layout: a data section and an"
                                         " ingest -> train -> evaluate pipeline on --source.")] = False,
    source: Annotated[str, typer.Option("--source", metavar="FILE",
                                        help="With --hangar: your data, a .csv(.gz) or .npz file"
                                             " (default: the MNIST sample, mnist-5k).")] = "mnist-5k",
    prefix: Annotated[str, typer.Option("--prefix", help="With --hangar: column names' prefix.")] = "data",
) -> None:
    """Write a starter pipeline.yaml and params.yaml here and ignore .hpipe/ in git. Never overwrites.

    Example: `hpipe init --hangar --source digits.csv && hpipe repro`.
    """
    from hangar_pipe.cli.scaffold import hangar_files, init_project

    files = hangar_files(source, prefix) if hangar else None
    for message in init_project(Path.cwd(), files):
        out(message)
