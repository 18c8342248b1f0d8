"""`hpipe exp run`: run an experiment's points, each in its own workspace and process.

Each point is `hpipe repro` in a copy of the project (experiments/workspace.py), in a process
forked from this one (experiments/process.py), at the point's data commit, tagged in the history
with the experiment, the point's id and its overrides. Up to `jobs` points run at once, each on
its own share of the CPUs (so `-j 2` on 2 cores does not oversubscribe; the thread count
follows, see core/threads.py). What a point leaves is one record,
`.hpipe/exps/NAME/points/ID.json`, written when it has finished: its state, run id, metrics and
params files (what `exp apply` puts back). An interrupted or killed `exp run` records no point it
did not finish, and a point's process stops when `exp run` is gone; running the same command
again runs only the points without a record (a failed one is tried again, and so is every point
when the project's files changed since: see workspace.digest).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hangar_pipe.core import layout
from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.history import History, RunRecord
from hangar_pipe.core.mutex import ReproMutex
from hangar_pipe.core.threads import cores
from hangar_pipe.errors import UserError
from hangar_pipe.experiments import records, workspace
from hangar_pipe.experiments.plan import Point
from hangar_pipe.experiments.process import PointProcess
from hangar_pipe.experiments.records import PointRecord
from hangar_pipe.pipeline import Pipeline


class ExpReporter(Protocol):
    def point_started(self, point: Point) -> None: ...

    def point_done(self, record: PointRecord, before: bool) -> None:
        """A point finished (`before`: an earlier `exp run` of this experiment finished it)."""


@dataclass
class Experiment:
    """What `exp run` was asked: the name, the stages to reproduce and the points."""

    name: str
    points: list[Point]
    stages: list[str] = field(default_factory=list)
    jobs: int = 1
    fail_fast: bool = False
    force: bool = False


@dataclass
class _Running:
    point: Point
    proc: PointProcess
    slot: int
    started: float


def run(pipeline: Pipeline, exp: Experiment, reporter: ExpReporter) -> list[PointRecord]:
    """Run the points not done yet; every point's record, in the experiment's order."""
    for point in exp.points[:1]:  # (every point sets the same keys)
        workspace.check_overrides(pipeline.root, point.overrides)
    folder = layout.experiments(pipeline.root) / exp.name
    (folder / "points").mkdir(parents=True, exist_ok=True)
    try:
        mutex = ReproMutex(folder / "run.lock", wait=0).acquire()
    except UserError:
        raise UserError(f"experiment '{exp.name}' is running in another hpipe exp run") from None
    try:
        _write_plan(folder, exp)
        base = workspace.digest(pipeline.spec)  # a point done on other files is not done now
        done = {r.id: r for r in records.load(folder) if r.state == "done" and r.base == base}
        for point in exp.points:
            if point.id in done:
                reporter.point_done(done[point.id], True)
        todo = [p for p in exp.points if p.id not in done]
        _Loop(pipeline, exp, folder, reporter, base).run(todo)
        found = {r.id: r for r in records.load(folder)}
        return [found[p.id] for p in exp.points if p.id in found]
    finally:
        mutex.release()


def _write_plan(folder: Path, exp: Experiment) -> None:
    """experiment.json: the name, stages and every point asked so far (a rerun may add some)."""
    path = folder / "experiment.json"
    known = json.loads(path.read_text())["points"] if path.exists() else []
    ids = {p["id"] for p in known}
    plan = {"name": exp.name, "stages": exp.stages,
            "points": [*known, *(p.to_dict() for p in exp.points if p.id not in ids)]}
    atomic_write(path, json.dumps(plan, indent=2).encode())


class _Loop:
    """Starts points up to `jobs` at once on the main thread, and records each as it ends."""

    def __init__(self, pipeline: Pipeline, exp: Experiment, folder: Path, reporter: ExpReporter,
                 base: str) -> None:
        self.pipeline, self.exp, self.folder, self.reporter, self.base = pipeline, exp, folder, reporter, base
        self.running: list[_Running] = []
        self.failed = False
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        shares = max(1, min(exp.jobs, len(cpus) or 1))
        self.cpus = [cpus[i::shares] for i in range(shares)] if exp.jobs > 1 and cpus else []

    def run(self, todo: list[Point]) -> None:
        todo = list(todo)
        try:
            while todo or self.running:
                while todo and len(self.running) < self.exp.jobs and not (self.failed and self.exp.fail_fast):
                    self._start(todo.pop(0))
                if self.failed and self.exp.fail_fast:
                    if not self.running:
                        break
                    for r in self.running:  # (interrupted points are not recorded: run next time)
                        r.proc.interrupt()
                self._reap()
                time.sleep(0.02)
        except BaseException:
            self._stop_all()
            raise

    def _start(self, point: Point) -> None:
        busy = {r.slot for r in self.running}
        slot = next(i for i in range(self.exp.jobs) if i not in busy)
        ws = self.folder / "ws" / point.id
        _wait_for_leftovers(ws)
        workspace.make(self.pipeline.spec, ws, point.overrides)
        log_path = self.folder / "logs" / f"{point.id}.log"
        log_path.parent.mkdir(exist_ok=True)
        cpus = self.cpus[slot % len(self.cpus)] if self.cpus else None
        self.reporter.point_started(point)
        started = time.time()
        proc = PointProcess(self._command(point, ws), log_path, cpus, len(cpus) if cpus else cores())
        self.running.append(_Running(point, proc, slot, started))

    def _command(self, point: Point, ws: Path) -> list[str]:
        """The point's `hpipe` command line (argv without the program)."""
        tags = {"experiment": self.exp.name, "point": point.id, "overrides": point.label()}
        cmd = ["-C", str(ws), "repro", *self.exp.stages]
        cmd += [arg for k, v in tags.items() for arg in ("--tag", f"{k}={v}")]
        if point.data_commit:
            cmd += ["--data-commit", point.data_commit]
        return cmd + (["--force"] if self.exp.force else [])

    def _reap(self) -> None:
        for r in list(self.running):
            code = r.proc.poll()
            if code is None:
                continue
            self.running.remove(r)
            if code == 130 or code < 0:  # interrupted: not recorded, run again next time
                continue
            record = self._record(r, code)
            self.failed |= record.state != "done"
            self.reporter.point_done(record, False)

    def _record(self, r: _Running, code: int) -> PointRecord:
        ws = self.folder / "ws" / r.point.id
        run = _find_run(self.pipeline.root, self.exp.name, r.point.id, r.started)
        record = records.from_workspace(self.pipeline.spec, ws, r.point, self.exp, run, code,
                                        r.started, self.folder / "logs" / f"{r.point.id}.log", self.base)
        records.save(self.folder, record)
        shutil.rmtree(ws, ignore_errors=True)
        return record

    def _stop_all(self) -> None:
        """Interrupt the points running (as Ctrl-C would) and wait for them to stop."""
        for r in self.running:
            r.proc.interrupt()
        for r in self.running:
            r.proc.wait(timeout=30)
        self.running.clear()


def _find_run(root: Path, name: str, point: str, since: float) -> RunRecord | None:
    """The history's record of this point's run (None: the run ended before it was recorded)."""
    for run in History(layout.history_db(root)).since(since - 1):
        if run.tags.get("experiment") == name and run.tags.get("point") == point:
            return run
    return None


def _wait_for_leftovers(ws: Path) -> None:
    """A point's workspace left by a killed `exp run` may still have its repro stopping: wait for it."""
    if (ws / layout.STATE_DIR).is_dir() and not (ws / layout.STATE_DIR).is_symlink():
        with ReproMutex(layout.repro_mutex(ws), wait=60):
            pass
