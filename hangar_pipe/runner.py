"""The runner: walk the stages in graph order, check each one when its upstream is done, run what changed.

It knows nothing about files, params or Hangar: a `StageOps` checks a stage (returns its
reasons as data), executes it and records it. Independent stages run in parallel with
`jobs > 1`; a failure stops new stages (or, with keep_going, only their dependents);
Ctrl-C or SIGTERM stops the running commands and records nothing half-done.
"""

from __future__ import annotations

import graphlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from hangar_pipe.errors import UserError


@dataclass
class StageResult:
    name: str
    state: str  # ran | restored | skipped | would run | failed | blocked | frozen | pinned | interrupted
    reasons: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None
    error: str | None = None
    restored_from: str | None = None  # the run whose outputs were restored

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


@dataclass
class RunResult:
    stages: list[StageResult] = field(default_factory=list)
    interrupted: bool = False

    def __getitem__(self, name: str) -> StageResult:
        return next(r for r in self.stages if r.name == name)

    def named(self, *states: str) -> list[str]:
        return [r.name for r in self.stages if r.state in states]

    @property
    def ok(self) -> bool:
        return not self.interrupted and not self.named("failed", "blocked")

    @property
    def changed(self) -> bool:
        return bool(self.named("ran", "restored", "would run", "failed"))


class StageOps(Protocol):
    def check(self, name: str, upstream_would_run: list[str]) -> dict[str, Any]: ...

    def restore(self, name: str) -> str | None: ...  # the run restored from, or None: run it

    def execute(self, name: str, procs: Processes) -> int: ...

    def record(self, name: str) -> None: ...  # raise StageError if the outputs are not right


class StageError(Exception):
    """A stage ran but cannot be recorded (e.g. an output is missing)."""


class Processes:
    """The commands running now, each in its own process group so it can be stopped whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def run(self, args: str | list[str], *, shell: bool, cwd: str, env: dict[str, str]) -> int:
        with self._lock:
            if self.stopping:
                return -signal.SIGTERM
            proc = subprocess.Popen(args, shell=shell, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            self._running.add(proc)
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._running.discard(proc)

    def stop_all(self, grace: float = 5.0) -> None:
        with self._lock:
            self.stopping = True
            procs = list(self._running)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(order: list[str], upstream: dict[str, set[str]], ops: StageOps, *,
        held: dict[str, str] | None = None, dry_run: bool = False, keep_going: bool = False,
        jobs: int = 1, on_start: Callable[[str, dict[str, Any]], None] | None = None,
        on_done: Callable[[StageResult], None] | None = None) -> RunResult:
    """Check and run `order` (a topologically sorted selection) and report every stage.

    `held` names stages that must not run, with the state to report (frozen, pinned).
    """
    held = held or {}
    selected = set(order)
    position = {name: i for i, name in enumerate(order)}
    sorter = graphlib.TopologicalSorter({n: upstream[n] & selected for n in order})
    sorter.prepare()
    results: dict[str, StageResult] = {}
    running: dict[Future[int], tuple[str, dict[str, Any], float]] = {}
    procs = Processes()
    queue: list[str] = []  # ready stages waiting for a free job slot
    stop = False

    def finish(result: StageResult) -> None:
        results[result.name] = result
        sorter.done(result.name)
        if on_done:
            on_done(result)

    def start(name: str) -> None:
        nonlocal stop
        failed_up = sorted(u for u in upstream[name] & selected
                           if results[u].state in ("failed", "blocked"))
        if failed_up:
            return finish(StageResult(name, "blocked", {"upstream failed": failed_up}))
        if name in held:
            return finish(StageResult(name, held[name]))
        would_run = sorted(u for u in upstream[name] & selected if results[u].state == "would run")
        try:
            reasons = ops.check(name, would_run)
        except UserError as exc:  # e.g. a params key an upstream stage just removed
            if dry_run:
                raise
            stop = stop or not keep_going
            return finish(StageResult(name, "failed", {}, 0.0, str(exc)))
        if not reasons:
            return finish(StageResult(name, "skipped"))
        if dry_run:
            return finish(StageResult(name, "would run", reasons))
        t0 = time.monotonic()
        if source := ops.restore(name):
            return finish(StageResult(name, "restored", reasons, time.monotonic() - t0,
                                      restored_from=source))
        if on_start:
            on_start(name, reasons)
        running[pool.submit(ops.execute, name, procs)] = (name, reasons, time.monotonic())

    def collect(fut: Future[int]) -> None:
        nonlocal stop
        name, reasons, t0 = running.pop(fut)
        try:
            code = fut.result()
            if code != 0:
                raise StageError(f"command exited with code {code}" if code > 0
                                 else f"command killed by signal {-code}")
            ops.record(name)
        except Exception as exc:  # noqa: BLE001 - any error fails this stage; the lock stays consistent
            stop = stop or not keep_going
            message = str(exc) if isinstance(exc, (StageError, OSError, UserError)) else (
                f"{type(exc).__name__}: {exc}")
            return finish(StageResult(name, "failed", reasons, time.monotonic() - t0, message))
        finish(StageResult(name, "ran", reasons, time.monotonic() - t0))

    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        while sorter.is_active() and not (stop and not running):
            if not stop:
                queue.extend(sorted(sorter.get_ready(), key=position.__getitem__))
                while queue and len(running) < max(1, jobs):
                    start(queue.pop(0))
            if running:
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: position[running[f][0]]):
                    collect(fut)
    except KeyboardInterrupt:
        procs.stop_all()
        for fut, (name, reasons, t0) in list(running.items()):
            fut.exception()  # wait for the stopped command
            results[name] = StageResult(name, "interrupted", reasons, time.monotonic() - t0)
            if on_done:
                on_done(results[name])
        running.clear()
        return RunResult([results[n] for n in order if n in results], interrupted=True)
    finally:
        pool.shutdown(wait=True)
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
    return RunResult([results[n] for n in order if n in results])
