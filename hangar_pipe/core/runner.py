"""The runner: walk the stages in graph order, check each one when its upstream is done, run what changed.

It knows nothing about files, params or Hangar: a `StageOps` checks a stage (its reasons, as
data), restores, launches and records it. Independent stages run in parallel with `jobs > 1`;
a failure stops new stages (or, with keep_going, only their dependents); Ctrl-C or SIGTERM
stops the running commands and records nothing half-done.
"""

from __future__ import annotations

import graphlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hangar_pipe.core.reporter import Reporter
from hangar_pipe.errors import UserError

if TYPE_CHECKING:
    from hangar_pipe.core.orphans import RunningStages

if TYPE_CHECKING:  # concurrent.futures (and the logging it imports) loads only when a stage runs
    from concurrent.futures import Future, ThreadPoolExecutor

Verify = str | dict[str, dict[str, Any]] | None  # "reproduced exactly", {metric: {old, new}}, or why not
State = Literal["ran", "restored", "skipped", "would run", "failed", "blocked", "frozen", "pinned",
                "interrupted"]


@dataclass
class StageResult:
    """What became of one stage in a run: its state and why (the decision's data)."""

    name: str
    state: State
    reasons: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None
    error: str | None = None
    restored_from: str | None = None  # the run whose outputs were restored
    notes: dict[str, Any] = field(default_factory=dict)  # worth saying, not a reason to run (data)
    verify: Verify = None  # with --verify only

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


@dataclass
class RunResult:
    """What became of every stage a run selected, in order."""

    stages: list[StageResult] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def __getitem__(self, name: str) -> StageResult:
        return next(r for r in self.stages if r.name == name)

    def named(self, *states: State) -> list[str]:
        return [r.name for r in self.stages if r.state in states]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.stages:
            counts[r.state] = counts.get(r.state, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return not self.interrupted and not self.named("failed", "blocked")

    @property
    def changed(self) -> bool:
        return bool(self.named("ran", "restored", "would run", "failed"))


Job = Callable[["Processes"], int]  # runs a stage's commands on a pool thread; their exit code


class StageOps(Protocol):
    def check(self, name: str, upstream_would_run: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(reasons to run, notes) as plain data; no reasons: up to date."""

    def restore(self, name: str) -> str | None: ...  # the run restored from, or None: run it

    def launch(self, name: str) -> Job: ...  # everything the commands need, prepared on the main thread

    def record(self, name: str) -> Verify: ...  # the verify outcome; raise StageError if outputs are wrong

    def exclusive(self, name: str) -> set[str]: ...  # what it must hold alone while it runs (a data repo it writes)


class StageError(Exception):
    """A stage ran but cannot be recorded (e.g. an output is missing)."""


class Processes:
    """The commands running now, each in its own process group so it can be stopped whole."""

    def __init__(self, stdout: int | None = None, registry: RunningStages | None = None) -> None:
        self.stdout = stdout
        self.registry = registry  # where groups are recorded while they run (not in a dry run)
        self._guard = threading.Lock()
        self._running: set[StageProcess] = set()
        self.stopping = False

    def run(self, args: str | list[str], *, shell: bool, cwd: str, env: dict[str, str],
            stage: str = "", warm: Callable[[], StageProcess | None] | None = None) -> int:
        """Run a command in its own process group and wait for it; `warm` may start it instead
        (core/warm.py: a child of the zygote), or answer None to have it started here."""
        proc = self._start(args, shell=shell, cwd=cwd, env=env, stage=stage, warm=warm)
        if proc is None:
            return -signal.SIGTERM
        try:
            return proc.wait()
        finally:
            with self._guard:
                self._running.discard(proc)
            if self.registry is not None:
                self.registry.remove(proc.pid)

    def _start(self, args: str | list[str], *, shell: bool, cwd: str, env: dict[str, str], stage: str,
               warm: Callable[[], StageProcess | None] | None) -> StageProcess | None:
        """The started process, registered; None when the run is stopping."""
        import subprocess  # here, not on the no-op path (~5 ms)

        started = warm() if warm is not None else None  # may wait for the zygote's imports
        with self._guard:
            if not self.stopping:
                proc = started or subprocess.Popen(args, shell=shell, cwd=cwd, env=env,
                                                   stdin=subprocess.DEVNULL, stdout=self.stdout,
                                                   start_new_session=True)
                self._running.add(proc)
                if self.registry is not None:
                    self.registry.add(proc.pid, stage)
                return proc
        if started is not None:  # started as the run was stopped: stop it too
            _stop([started], 5.0)
        return None

    def stop_all(self, grace: float = 5.0) -> None:
        with self._guard:
            self.stopping = True
            procs = list(self._running)
        _stop(procs, grace)


class StageProcess(Protocol):
    """A started stage command: a `subprocess.Popen`, or a child of the zygote (core/warm.py)."""

    pid: int  # also its process group

    def wait(self, timeout: float | None = None) -> int: ...


def _stop(procs: list[StageProcess], grace: float) -> None:
    """SIGTERM each process group, SIGKILL those still there after `grace` seconds."""
    import subprocess

    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: StageProcess, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Runner:
    """Checks and runs `order` (a topologically sorted selection) and reports every stage.

    Threads: `run`, `_start`, `_collect` and every `ops` call run on the calling (main) thread,
    which alone touches the results, the lock, the data source and the reporter. Only the job
    that `ops.launch` returns runs on a pool thread (one per job): it starts the stage's commands
    and waits for them. `held` names stages that must not run, with the state to report (frozen,
    pinned).
    """

    def __init__(self, order: list[str], upstream: dict[str, set[str]], ops: StageOps,
                 reporter: Reporter, *, held: dict[str, State] | None = None, dry_run: bool = False,
                 keep_going: bool = False, jobs: int = 1, registry: RunningStages | None = None) -> None:
        self.order, self.ops, self.reporter = order, ops, reporter
        self.held = held or {}
        self.dry_run, self.keep_going, self.jobs = dry_run, keep_going, max(1, jobs)
        selected = set(order)
        self.upstream = {n: upstream[n] & selected for n in order}
        self.position = {name: i for i, name in enumerate(order)}
        self.results: dict[str, StageResult] = {}
        self.running: dict[Future[int], tuple[str, dict[str, Any], float]] = {}
        self.procs = Processes(reporter.stage_output, registry)
        self.stop = False  # set by a failure without keep_going: start nothing new
        self.sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(self.upstream)
        self.pool: ThreadPoolExecutor | None = None

    def run(self) -> RunResult:
        t0 = time.monotonic()
        self.sorter.prepare()
        in_main = threading.current_thread() is threading.main_thread()
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
        interrupted = False
        try:
            self._loop()
        except KeyboardInterrupt:
            self._interrupt()
            interrupted = True
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            if in_main:
                signal.signal(signal.SIGTERM, old_term)
        return RunResult([self.results[n] for n in self.order if n in self.results], interrupted,
                         time.monotonic() - t0)

    def _loop(self) -> None:
        queue: list[str] = []  # ready stages waiting for a free job slot
        while self.sorter.is_active() and not (self.stop and not self.running):
            if not self.stop:
                queue.extend(sorted(self.sorter.get_ready(), key=self.position.__getitem__))
                while queue and len(self.running) < self.jobs and (name := self._next(queue)):
                    queue.remove(name)
                    self._start(name)
            if self.running:
                from concurrent.futures import FIRST_COMPLETED, wait

                done, _ = wait(list(self.running), timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: self.position[self.running[f][0]]):
                    self._collect(fut)

    def _next(self, queue: list[str]) -> str | None:
        """The first queued stage that needs nothing a running stage holds (two writers of one
        Hangar repository never run at once: Hangar has one writer lock)."""
        held = {r for name, _, _ in self.running.values() for r in self.ops.exclusive(name)}
        return next((name for name in queue if not self.ops.exclusive(name) & held), None)

    def _submit(self, name: str, reasons: dict[str, Any]) -> None:
        """Hand the stage's commands to a pool thread (the pool starts with the first stage to run)."""
        t0 = time.monotonic()
        try:
            job = self.ops.launch(name)
        except Exception as exc:  # noqa: BLE001 - e.g. its data cannot be resolved: fail this stage
            return self._fail(name, reasons, t0, exc)
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=self.jobs)
        self.reporter.stage_started(name, reasons)
        self.running[self.pool.submit(job, self.procs)] = (name, reasons, t0)

    def _fail(self, name: str, reasons: dict[str, Any], t0: float, exc: Exception) -> None:
        self.stop = self.stop or not self.keep_going
        message = str(exc) if isinstance(exc, (StageError, OSError, UserError)) else (
            f"{type(exc).__name__}: {exc}")
        self._finish(StageResult(name, "failed", reasons, time.monotonic() - t0, message))

    def _finish(self, result: StageResult) -> None:
        self.results[result.name] = result
        self.sorter.done(result.name)
        self.reporter.stage_done(result)

    def _upstream_in(self, name: str, *states: str) -> list[str]:
        return sorted(u for u in self.upstream[name] if self.results[u].state in states)

    def _start(self, name: str) -> None:
        """Decide a ready stage: blocked, held, up to date, restored, or submitted to run."""
        if failed_up := self._upstream_in(name, "failed", "blocked"):
            return self._finish(StageResult(name, "blocked", {"upstream failed": failed_up}))
        if name in self.held:
            return self._finish(StageResult(name, self.held[name]))
        try:
            reasons, notes = self.ops.check(name, self._upstream_in(name, "would run"))
        except UserError as exc:  # e.g. a params key an upstream stage just removed
            if self.dry_run:
                raise
            self.stop = self.stop or not self.keep_going
            return self._finish(StageResult(name, "failed", {}, 0.0, str(exc)))
        if not reasons:
            return self._finish(StageResult(name, "skipped", notes=notes))
        if self.dry_run:
            return self._finish(StageResult(name, "would run", reasons, notes=notes))
        t0 = time.monotonic()
        try:
            source = self.ops.restore(name)
        except (UserError, OSError) as exc:  # e.g. an output folder now linked out of the project
            return self._fail(name, reasons, t0, exc)
        if source:
            return self._finish(StageResult(name, "restored", reasons, time.monotonic() - t0,
                                            restored_from=source))
        self._submit(name, reasons)

    def _collect(self, fut: Future[int]) -> None:
        """Record a stage whose commands finished (or fail it)."""
        name, reasons, t0 = self.running.pop(fut)
        try:
            code = fut.result()
            if code != 0:
                raise StageError(f"command exited with code {code}" if code > 0
                                 else f"command killed by signal {-code}")
            verified = self.ops.record(name)
        except Exception as exc:  # noqa: BLE001 - any error fails this stage; the lock stays consistent
            return self._fail(name, reasons, t0, exc)
        self._finish(StageResult(name, "ran", reasons, time.monotonic() - t0, verify=verified))

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop the commands, report what was running as interrupted."""
        self.procs.stop_all()
        for fut, (name, reasons, t0) in list(self.running.items()):
            fut.exception()  # wait for the stopped command
            self.results[name] = StageResult(name, "interrupted", reasons, time.monotonic() - t0)
            self.reporter.stage_done(self.results[name])
        self.running.clear()
