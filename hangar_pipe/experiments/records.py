"""An experiment's points as recorded: `.hpipe/exps/NAME/points/ID.json`, one per finished point.

A record holds what `exp show` lists (overrides, data commit, state, metrics, the run id) and
what `exp apply` puts back (the params files as the point read them; its outputs are in the
shared caches).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar_pipe.core import layout
from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.history import RunRecord, Table
from hangar_pipe.core.spec import PipelineSpec
from hangar_pipe.errors import UserError
from hangar_pipe.experiments.plan import Overrides, Point

if TYPE_CHECKING:
    from hangar_pipe.experiments.runner import Experiment


@dataclass
class PointRecord:
    """One finished point of an experiment."""

    id: str
    experiment: str
    overrides: Overrides
    data_commit: str | None
    state: str  # done | failed
    run_id: str | None
    started: float
    seconds: float
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ran, restored, skipped, failed...
    params: Table = field(default_factory=dict)  # every param the stages read, at the end
    metrics: Table = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # the params files, as the point read them
    error: str | None = None  # a failed point: the last line of its log
    log: str = ""
    targets: list[str] = field(default_factory=list)  # the stages `exp run` was given (none: all)
    base: str = ""  # the project's files it ran on (workspace.digest)

    @property
    def point(self) -> Point:
        return Point(self.overrides, self.data_commit)

    @property
    def label(self) -> str:
        return self.point.label()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(folder: Path) -> list[PointRecord]:
    """The records of one experiment folder, oldest first (an unreadable one is left out)."""
    found = []
    for path in sorted((folder / "points").glob("*.json")):
        try:
            found.append(PointRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(found, key=lambda r: r.started)


def check_name(name: str) -> str:
    """An experiment's name is one folder under .hpipe/exps/: letters, digits, - _ . and no more."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", name or ""):
        raise UserError(f"--name '{name}': use letters, digits and - _ . (no slashes)")
    return name


def load_all(root: Path, name: str | None = None) -> list[PointRecord]:
    """Every experiment's records (or one experiment's), oldest first."""
    if name is not None:
        check_name(name)
    top = layout.experiments(root)
    folders = [top / name] if name else sorted(p for p in top.glob("*") if p.is_dir())
    if name and not (top / name).is_dir():
        known = sorted(p.name for p in top.glob("*") if p.is_dir())
        raise UserError(f"no experiment '{name}' (experiments: {', '.join(known) or 'none yet'})")
    return sorted((r for f in folders for r in load(f)), key=lambda r: r.started)


def save(folder: Path, record: PointRecord) -> None:
    atomic_write(folder / "points" / f"{record.id}.json", json.dumps(record.to_dict(), indent=2).encode())


def from_workspace(spec: PipelineSpec, ws: Path, point: Point, exp: Experiment, run: RunRecord | None,
                   code: int, started: float, log: Path, base: str) -> PointRecord:
    """The record of a point whose `repro` ended with exit code `code` in workspace `ws`."""
    named = {*_params_files(spec), *point.overrides}  # (an override read through a ${...} too)
    files = {file: (ws / file).read_text() for file in sorted(named) if (ws / file).is_file()}
    state = "done" if code == 0 and run is not None and run.status == 0 else "failed"
    return PointRecord(
        id=point.id, experiment=exp.name, overrides=point.overrides, data_commit=point.data_commit,
        state=state, run_id=run.id if run else None, started=started, seconds=time.time() - started,
        stages={s["name"]: s["state"] for s in run.stages} if run else {},
        params=run.params if run else {}, metrics=run.metrics if run else {}, files=files,
        error=None if state == "done" else _last_line(log), log=str(log), targets=list(exp.stages), base=base)


def _params_files(spec: PipelineSpec) -> list[str]:
    return sorted({p.file for stage in spec.stages.values() for p in stage.params})


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


def find(root: Path, ref: str) -> PointRecord:
    """A point by id (or a unique prefix of one), in any experiment."""
    matches = [r for r in load_all(root) if r.id.startswith(ref)]
    ids = {r.id for r in matches}
    if not matches:
        raise UserError(f"no experiment point '{ref}' (see hpipe exp show)")
    if len(ids) > 1:
        raise UserError(f"'{ref}' names {len(ids)} points: {', '.join(sorted(ids))}")
    return matches[-1]


def remove(root: Path, refs: list[str], name: str | None) -> list[str]:
    """Remove points (ids or prefixes), or a whole experiment (`name`); the ids removed."""
    if name is not None:
        gone = [r.id for r in load_all(root, name)]  # (which checks the name first)
        shutil.rmtree(layout.experiments(root) / name)
        return gone
    removed = []
    for ref in refs:
        record = find(root, ref)
        folder = layout.experiments(root) / record.experiment
        (folder / "points" / f"{record.id}.json").unlink(missing_ok=True)
        Path(record.log).unlink(missing_ok=True)
        removed.append(record.id)
    return removed
