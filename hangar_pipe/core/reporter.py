"""Reporters: what a run tells the outside world, as events. Library code never prints.

The runner and the stage operations call a `Reporter`; the CLI passes a console reporter
(`hangar_pipe.cli.console`), `hpipe repro --json` passes `JsonLinesReporter` (one JSON event per
line), and the Python API passes `SilentReporter` unless told otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from hangar_pipe.core.runner import RunResult, StageResult


class Reporter(Protocol):
    """Called from the main thread only, in the order things happen."""

    stage_output: int | None  # where stage commands write their stdout (a file descriptor; None: ours)

    def run_started(self, run_id: str | None, stages: list[str]) -> None:
        """The stages this run considers, in order; `run_id` is None for a dry run."""

    def stage_started(self, name: str, reasons: dict[str, Any]) -> None: ...

    def stage_done(self, result: StageResult) -> None: ...

    def recovered(self, pid: int) -> None:
        """This run took over from a killed one (its pid)."""

    def warning(self, message: str) -> None: ...

    def note(self, message: str) -> None:
        """Worth saying once, not a warning (the thread count the stages use, say)."""

    def progress(self, name: str, what: str, done: int, total: int | None) -> None: ...

    def run_done(self, result: RunResult) -> None: ...


class SilentReporter:
    """Reports nothing but warnings, which go to Python's `warnings` module: the Python API's default."""

    stage_output: int | None = None

    def run_started(self, run_id: str | None, stages: list[str]) -> None:
        pass

    def stage_started(self, name: str, reasons: dict[str, Any]) -> None:
        pass

    def stage_done(self, result: StageResult) -> None:
        pass

    def recovered(self, pid: int) -> None:
        pass

    def warning(self, message: str) -> None:
        import warnings

        warnings.warn(f"hpipe: {message}", RuntimeWarning, stacklevel=2)

    def note(self, message: str) -> None:
        pass

    def progress(self, name: str, what: str, done: int, total: int | None) -> None:
        pass

    def run_done(self, result: RunResult) -> None:
        pass


class JsonLinesReporter:
    """One JSON object per event and line on stdout, for CI logs and other tools.

    Stage commands' own output goes to stderr, so stdout holds only events.
    """

    stage_output: int | None = 2

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        self.stream.flush()

    def run_started(self, run_id: str | None, stages: list[str]) -> None:
        self._emit("run_started", run_id=run_id, stages=stages)

    def stage_started(self, name: str, reasons: dict[str, Any]) -> None:
        self._emit("stage_started", stage=name, reasons=reasons)

    def stage_done(self, result: StageResult) -> None:
        fields = result.to_dict()
        self._emit("stage_done", stage=fields.pop("name"), **fields)

    def recovered(self, pid: int) -> None:
        self._emit("recovered", pid=pid)

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def progress(self, name: str, what: str, done: int, total: int | None) -> None:
        self._emit("progress", stage=name, what=what, done=done, total=total)

    def run_done(self, result: RunResult) -> None:
        self._emit("run_done", ok=result.ok, interrupted=result.interrupted,
                   counts=result.counts(), seconds=round(result.seconds, 3))
