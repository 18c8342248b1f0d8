"""What `hpipe` prints: the console reporter (stage lines as a run goes), summaries and tables."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from hangar_pipe.cli.app import terminal_width
from hangar_pipe.core.decisions import describe
from hangar_pipe.core.reporter import SilentReporter
from hangar_pipe.core.runner import RunResult, StageResult
from hangar_pipe.core.spec import Stage

MARKS = {"ran": "✓", "restored": "↺", "failed": "✗", "blocked": "✗", "interrupted": "✗",
         "would run": "•", "skipped": "·", "frozen": "·", "pinned": "·"}


_COLOURS = {"ran": "32", "restored": "36", "failed": "31", "blocked": "31", "interrupted": "31",
            "would run": "33", "running": "33", "pinned": "2", "skipped": "2", "frozen": "2"}


def out(text: str) -> None:
    print(text, flush=True)


def use_colour(stream: Any = None) -> bool:
    """Colour on a terminal; plain when piped, with NO_COLOR set or TERM=dumb (FORCE_COLOR forces)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream or sys.stdout, "isatty", lambda: False)())


@dataclass
class Style:
    """How stage lines look: `verbose` gives every reason in full, else a line fits `width`."""

    verbose: bool = False
    colour: bool = False
    width: int = 80

    @classmethod
    def for_terminal(cls, verbose: bool = False) -> Style:
        return cls(verbose, use_colour(), terminal_width())

    def line(self, state: str, name: str, rest: str, reasons: dict[str, Any], stage: Stage | None,
             mark: str | None = None, notes: dict[str, Any] | None = None) -> str:
        """`✓ train: ran in 1.20s (why); note: …`, reasons and notes fitted to the line unless verbose."""
        head = f"{mark or MARKS.get(state, ' ')} {name}:"
        if "{why}" in rest:
            rest = rest.replace("{why}", self.fit(reasons, stage, len(head) + len(rest) - 4))
        if notes:
            rest += "; note: " + self.fit(notes, stage, len(head) + len(rest) + 9)
        if self.colour and state in _COLOURS:
            head = f"\033[{_COLOURS[state]}m{head}\033[0m"
        return f"{head} {rest}"

    def fit(self, reasons: dict[str, Any], stage: Stage | None, used: int) -> str:
        """The reasons in words, in what is left of the line after `used` characters."""
        return describe(reasons, stage, None if self.verbose else max(self.width - used, 24))


_LINES = {  # what follows `✓ train: ` for each state
    "ran": "ran in {duration:.2f}s ({why})",
    "failed": "failed after {duration:.2f}s: {error}",
    "restored": "restored from {restored_from} in {duration:.2f}s ({why})",
    "would run": "would run ({why})",
    "skipped": "up to date, skipped",
    "blocked": "not run ({why})",
    "pinned": "pinned (writes Hangar data; not run with --data-commit)",
}


def stage_line(r: StageResult, stage: Stage | None = None, style: Style | None = None,
               said_why: bool = False) -> str:
    """`✓ train: ran in 1.20s (changed params: …)` and the like; `said_why`: the reasons were on
    the stage's `running` line already, so they are not repeated."""
    line = _LINES.get(r.state, r.state)
    if r.state == "would run" and list(r.reasons) == ["upstream changed"]:
        line = "may run ({why})"  # only if the upstream stage's outputs do change
    if said_why:
        line = line.replace(" ({why})", "")
    source = "pipeline.lock's record" if r.restored_from == "lock" else f"run {r.restored_from}"
    text = line.format(duration=r.duration or 0.0, error=r.error, restored_from=source, why="{why}")
    return (style or Style(verbose=True)).line(r.state, r.name, text, r.reasons, stage, notes=r.notes)


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
    progress bars; the run's summary is the CLI's). `quiet`: failures only."""

    def __init__(self, stages: dict[str, Stage], style: Style | None = None, quiet: bool = False) -> None:
        self.stages = stages
        self.style = style or Style.for_terminal()
        self.quiet = quiet
        self.started: set[str] = set()

    def stage_started(self, name: str, reasons: dict[str, Any]) -> None:
        self.started.add(name)
        if not self.quiet:
            out(self.style.line("running", name, "running ({why})", reasons, self.stages.get(name), "→"))

    def stage_done(self, result: StageResult) -> None:
        if self.quiet and result.state not in ("failed", "blocked", "interrupted"):
            return
        out(stage_line(result, self.stages.get(result.name), self.style,
                       said_why=result.name in self.started and not self.quiet))

    def recovered(self, pid: int) -> None:
        out(f"note: taking over from an interrupted run (process {pid})")

    def note(self, message: str) -> None:
        if not self.quiet:
            out(f"note: {message}")

    def warning(self, message: str) -> None:
        print(f"hpipe: warning: {message}", file=sys.stderr, flush=True)


def print_table(title: str, headers: list[str], rows: list[list[str]], md: bool) -> None:
    from hangar_pipe.cli.table import markdown

    if md:
        out(markdown(headers, rows, [h in ("value", "old", "new", "change") for h in headers]))
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


class TransferReporter(SilentReporter):
    """`hpipe push`/`pull`: a progress bar on stderr when it is a terminal, warnings on stderr."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.bar = bool(getattr(self.stream, "isatty", lambda: False)())
        self.drawn = False

    def progress(self, name: str, what: str, done: int, total: int | None) -> None:
        if not self.bar or not total:
            return
        width = max(10, min(40, terminal_width() - len(what) - 30))
        filled = width * done // total
        self.stream.write(f"\r{what} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}\033[K")
        self.drawn = done < total
        if not self.drawn:
            self.stream.write("\r\033[K")
        self.stream.flush()

    def warning(self, message: str) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.drawn = False
        print(f"hpipe: warning: {message}", file=self.stream, flush=True)
