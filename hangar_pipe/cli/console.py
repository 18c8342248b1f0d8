"""What `hpipe` prints: the console reporter (stage lines as a run goes), summaries and tables."""

from __future__ import annotations

import sys
from typing import Any

from hangar_pipe.core.decisions import describe
from hangar_pipe.core.reporter import SilentReporter
from hangar_pipe.core.runner import RunResult, StageResult
from hangar_pipe.core.spec import Stage

MARKS = {"ran": "✓", "restored": "↺", "failed": "✗", "blocked": "✗", "interrupted": "✗",
         "would run": "•", "skipped": "·", "frozen": "·", "pinned": "·"}


def out(text: str) -> None:
    print(text, flush=True)


_LINES = {  # what follows `✓ train: ` for each state
    "ran": "ran in {duration:.2f}s ({why})",
    "failed": "failed after {duration:.2f}s: {error}",
    "restored": "restored from run {restored_from} in {duration:.2f}s ({why})",
    "would run": "would run ({why})",
    "skipped": "up to date, skipped",
    "blocked": "not run ({why})",
    "pinned": "pinned (writes Hangar data; not run with --data-commit)",
}


def stage_line(r: StageResult, stage: Stage | None = None) -> str:
    """`✓ train: ran in 1.20s (changed params: …)` and the like."""
    line = _LINES.get(r.state, r.state)
    if r.state == "would run" and list(r.reasons) == ["upstream changed"]:
        line = "may run ({why})"  # only if the upstream stage's outputs do change
    text = line.format(duration=r.duration or 0.0, error=r.error, restored_from=r.restored_from,
                       why=describe(r.reasons, stage))
    if r.notes:
        text += f"; note: {describe(r.notes, stage)}"
    return f"{MARKS.get(r.state, ' ')} {r.name}: {text}"


def summary(result: RunResult, dry_run: bool) -> str:
    if dry_run:
        decided = [r for r in result.stages if r.state == "would run"]
        would = [r.name for r in decided if list(r.reasons) != ["upstream changed"]]
        may = [r.name for r in decided if list(r.reasons) == ["upstream changed"]]
        if not decided:
            return "Everything is up to date."
        text = f"Would run {len(would)} stage(s): {', '.join(would)}." if would else "Would run no stage itself."
        if may:
            text += f" May run {len(may)} more if their upstream's outputs change: {', '.join(may)}."
        return text
    if result.interrupted:
        return f"Interrupted after {result.seconds:.2f}s; pipeline.lock holds every stage that finished."
    ran, failed = result.named("ran", "restored"), result.named("failed")
    if not ran and not failed and not result.named("blocked"):
        return "Everything is up to date."
    counts = result.counts()
    listed = [f"{counts[s]} {s}" for s in
              ("ran", "restored", "skipped", "failed", "blocked", "frozen", "pinned") if s in counts]
    tail = f"; stage '{failed[0]}' failed" if failed else ""
    return f"{', '.join(listed)} in {result.seconds:.2f}s{tail}."


class ConsoleReporter(SilentReporter):
    """Stage lines on stdout as the run goes, warnings on stderr (stage commands draw their own
    progress bars; the run's summary is the CLI's)."""

    def __init__(self, stages: dict[str, Stage]) -> None:
        self.stages = stages

    def stage_started(self, name: str, reasons: dict[str, Any]) -> None:
        out(f"→ {name}: running ({describe(reasons, self.stages.get(name))})")

    def stage_done(self, result: StageResult) -> None:
        out(stage_line(result, self.stages.get(result.name)))

    def recovered(self, pid: int) -> None:
        out(f"note: taking over from an interrupted run (process {pid})")

    def warning(self, message: str) -> None:
        print(f"hpipe: warning: {message}", file=sys.stderr, flush=True)


def print_table(title: str, headers: list[str], rows: list[list[str]], md: bool) -> None:
    from hangar_pipe.reports import markdown

    if md:
        out(markdown(headers, rows))
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
