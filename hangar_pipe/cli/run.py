"""`hpipe repro`, `status`, `dag` and `init`: bring the pipeline up to date, say what would run, draw it."""

import argparse
import json
import os
from pathlib import Path

from hangar_pipe.cli.app import arg, at_least, command, opt
from hangar_pipe.cli.console import ConsoleReporter, Style, out, stage_line, summary
from hangar_pipe.core.context import ReproOptions
from hangar_pipe.core.reporter import JsonLinesReporter, Reporter
from hangar_pipe.core.runner import RunResult
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

STAGES = arg("stages", nargs="*", metavar="STAGE", help="Stages (or output paths) to consider (default: all).")
DATA_COMMIT = opt("--data-commit", metavar="REF",
                  help="Read data.repo at this branch or commit; hold back stages that write Hangar data.")
VERBOSE = opt("-v", "--verbose", flag=True, help="Every reason in full, however long.")

def tag(text: str) -> tuple[str, str]:
    """`--tag KEY=VALUE`."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip(), value


REPRO = [
    STAGES,
    opt("-f", "--force", flag=True, help="Run the selected stages even if unchanged."),
    opt("-s", "--single-item", flag=True, help="Only the named stages, no upstream."),
    opt("--downstream", flag=True, help="The named stages and everything after them."),
    opt("-n", "--dry-run", flag=True, help="Print what would run and why; run nothing."),
    opt("-k", "--keep-going", flag=True, help="After a failure, go on with stages that do not depend on it."),
    opt("-j", "--jobs", type=at_least(1), default=1, metavar="N", help="Run up to N independent stages at once."),
    DATA_COMMIT,
    opt("--no-run-cache", flag=True, help="Run stages even when the run cache could restore them."),
    opt("--verify", flag=True, help="Rerun every selected stage and compare its metrics with those recorded"
                                    " for the same inputs; exit 1 on a difference."),
    opt("--json", dest="as_json", flag=True,
        help="Stream events as JSON lines on stdout (stage commands' own output goes to stderr)."),
    VERBOSE,
    opt("-q", "--quiet", flag=True, help="Print only failures."),
    opt("--pull", flag=True, help="Fetch from the remote what a stage needs and this machine lacks:"
                                  " outputs, run-cache results, data."),
    opt("-r", "--remote", help="With --pull: the remote (default: the default remote)."),
    opt("--no-resume", flag=True, help="Start stages over: delete what a killed run left them to resume from"
                                       " (their HPIPE_STATE_DIR)."),
    opt("--threads", type=at_least(1), metavar="N",
        help="CPU threads for each built-in stage (default: $HPIPE_THREADS, else as recorded for the same"
             " inputs, else the cores / -j)."),
    opt("--tag", dest="tags", action="append", type=tag, default=[], metavar="KEY=VALUE",
        help="Record this with the run in the history (`hpipe runs --json` shows it); repeatable."),
]


@command("repro", args=REPRO)
def repro(stages: list[str], force: bool, single_item: bool, downstream: bool, dry_run: bool,
          keep_going: bool, jobs: int, data_commit: str | None, no_run_cache: bool, verify: bool,
          as_json: bool, verbose: bool, quiet: bool, pull: bool, remote: str | None, no_resume: bool,
          threads: int | None, tags: list[tuple[str, str]]) -> int:
    """Run every stage whose inputs changed, and record what ran in pipeline.lock.

    Example: `hpipe repro train` brings train and what it needs up to date.
    """
    if threads is None:
        threads = _threads_from_env()
    pipeline = Pipeline.load()
    options = ReproOptions(force=force, single=single_item, downstream=downstream, dry_run=dry_run,
                           keep_going=keep_going, jobs=jobs, data_commit=data_commit,
                           run_cache=not no_run_cache, verify=verify, pull=pull, remote=remote,
                           resume=not no_resume, threads=threads, tags=dict(tags))
    reporter: Reporter = (JsonLinesReporter() if as_json else
                          ConsoleReporter(pipeline.stages, Style.for_terminal(verbose), quiet=quiet))
    result = pipeline.repro(stages or None, options, reporter)
    if not as_json and not (quiet and result.ok):
        out(summary(result, dry_run))
        if verify and result.ok:
            _print_verify(result)
    if result.interrupted:
        return 130
    return 1 if not result.ok or (verify and any(isinstance(r.verify, dict) for r in result.stages)) else 0


def _threads_from_env() -> int | None:
    """$HPIPE_THREADS, the default of --threads (a bad value names the variable)."""
    text = os.environ.get("HPIPE_THREADS", "").strip()
    if not text:
        return None
    try:
        return at_least(1)(text)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"HPIPE_THREADS: {exc}") from None


def _print_verify(result: RunResult) -> None:
    for r in result.stages:
        if isinstance(r.verify, dict):
            changes = ", ".join(f"{k} {v['old']} -> {v['new']}" for k, v in r.verify.items())
            out(f"verify {r.name}: NOT reproduced: {changes}")
        elif r.verify is not None:
            out(f"verify {r.name}: {r.verify}")


@command("status", args=[STAGES, opt("--json", dest="as_json", flag=True, help="Print the reasons as JSON."),
                          opt("-q", "--quiet", flag=True, help="Print nothing; exit 1 if anything would run."),
                          DATA_COMMIT, VERBOSE])
def status(stages: list[str], as_json: bool, quiet: bool, data_commit: str | None, verbose: bool) -> int:
    """Say which stages would run and why (-v: every stage, every reason in full).

    Example: `hpipe status --json | jq .train` shows train's reasons as data.
    """
    pipeline = Pipeline.load()
    result = pipeline.status(stages or None, data_commit=data_commit)
    changed = {r.name: r.reasons for r in result.stages if r.state == "would run"}
    if quiet:
        return 1 if changed else 0
    if as_json:
        out(json.dumps(changed, indent=2, default=str))
        return 0
    style = Style.for_terminal(verbose)
    for r in result.stages:
        if r.state in ("would run", "pinned") or r.notes or verbose:
            out(stage_line(r, pipeline.stages[r.name], style))
    if not changed:
        out("Everything is up to date.")
    return 0


@command("commit", args=[arg("stages", nargs="*", metavar="STAGE", help="Stages to record (default: all).")])
def commit(stages: list[str]) -> None:
    """Record stages in pipeline.lock as the workspace is now, without running them.

    Example: `hpipe commit train` after fixing a typo in a script that changes no output.
    """
    committed = Pipeline.load().commit(stages or None)
    out(f"Recorded {', '.join(committed)} as the workspace is now." if committed else "Nothing to record.")


@command("dag", args=[opt("--mermaid", flag=True, help="Mermaid flowchart."),
                       opt("--dot", flag=True, help="Graphviz dot.")])
def dag(mermaid: bool, dot: bool) -> None:
    """Draw the stage graph (ASCII by default).

    Example: `hpipe dag --mermaid > dag.md` for a diagram GitHub renders.
    """
    out(Pipeline.load().dag("mermaid" if mermaid else "dot" if dot else "ascii"))


@command("init", args=[
    opt("--hangar", flag=True, help="The Hangar layout: a data section and an ingest -> train -> evaluate"
                                    " pipeline on --source."),
    opt("--source", metavar="FILE", default="mnist-5k",
        help="With --hangar: your data, a .csv(.gz) or .npz file (default: the MNIST sample, mnist-5k)."),
    opt("--prefix", default="data", help="With --hangar: column names' prefix (default: data).")])
def init(hangar: bool, source: str, prefix: str) -> None:
    """Write a starter pipeline.yaml and params.yaml here and ignore .hpipe/ in git. Never overwrites.

    Example: `hpipe init --hangar --source digits.csv && hpipe repro`.
    """
    from hangar_pipe.cli.scaffold import hangar_files, init_project

    files = hangar_files(source, prefix) if hangar else None
    for message in init_project(Path.cwd(), files):
        out(message)
