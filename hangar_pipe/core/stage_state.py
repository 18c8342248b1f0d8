"""Resume folders: where a stage keeps what lets a killed run go on, `HPIPE_STATE_DIR`.

`.hpipe/state/<stage>/<run key>` (layout.stage_state): keyed by the stage's run key, so a run
with other inputs never sees another's state. hpipe makes the folder before it launches the
stage and deletes it once the stage is recorded (or restored from the run cache); `repro
--no-resume` deletes it before the launch; a killed or failed run leaves it for the next run.
`hpipe gc` removes the orphans: folders of stages that are gone, or of run keys that are not the
stage's key now. Nothing here follows a link: a link where a folder belongs is removed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.decisions import measure_deps
from hangar_pipe.core.layout import path_safe, stage_state, stage_states
from hangar_pipe.core.runcache import run_key
from hangar_pipe.core.spec import Stage
from hangar_pipe.errors import UserError


def prepare(root: Path, stage: str, run_key: str, *, fresh: bool = False) -> Path:
    """The stage's resume folder for this run key, made (a real folder, never through a link);
    `fresh`: emptied first."""
    folder = stage_state(root, stage, run_key)
    if fresh:
        drop(root, stage, run_key)
    for path in (folder.parent.parent, folder.parent, folder):
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(exist_ok=True, parents=path == folder.parent.parent)
    return folder


def drop(root: Path, stage: str, run_key: str) -> None:
    """Delete the stage's resume folder for this run key (and the stage's folder once empty)."""
    folder = stage_state(root, stage, run_key)
    _remove(folder)
    try:
        folder.parent.rmdir()
    except OSError:  # not empty (another run key's state), or not there
        pass


def _remove(path: Path) -> int:
    """Delete a file, link or folder without following links; the bytes of the files deleted."""
    if not path.is_symlink() and not path.exists():
        return 0
    size = _size(path)
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
    return size


@dataclass
class Collected:
    """What `collect` removed (or would remove): resume folders and the bytes of their files."""

    folders: int = 0
    bytes: int = 0


def orphans(root: Path, current: Mapping[str, str | None]) -> list[Path]:
    """Resume folders no run will resume: of stages not in `current` (stage name -> its run key
    now; None: unknown, every folder kept), or of another run key. Stray files count too."""
    base = stage_states(root)
    if base.is_symlink() or not base.is_dir():
        return [base] if base.is_symlink() else []
    keys = {path_safe(name): key for name, key in current.items()}
    found: list[Path] = []
    for entry in sorted(base.iterdir()):
        if entry.name not in keys or entry.is_symlink() or not entry.is_dir():
            found.append(entry)
            continue
        key = keys[entry.name]
        found += [f for f in sorted(entry.iterdir()) if key is not None and f.name != key]
    return found


def collect(root: Path, current: Mapping[str, str | None], dry_run: bool) -> Collected:
    """Remove the orphaned resume folders (`orphans`); how many, and their size."""
    done = Collected()
    for path in orphans(root, current):
        done.folders += 1
        done.bytes += _size(path) if dry_run else _remove(path)
    if not dry_run:
        for folder in stage_states(root).glob("*"):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
    return done


def _size(path: Path) -> int:
    """The bytes of a file, or of the files in a folder (links are not followed)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(os.lstat(os.path.join(b, f)).st_size for b, _, files in os.walk(path) for f in files)


def current_keys(stages: Mapping[str, Stage], ws: Workspace) -> dict[str, str | None]:
    """Each stage's run key as its inputs are now, measured only for stages that keep a resume
    folder (None for the others, and for a stage whose inputs cannot be measured now)."""
    base = stage_states(ws.root)
    keys: dict[str, str | None] = {}
    for name, stage in stages.items():
        keys[name] = None
        if (base / path_safe(name)).is_dir():
            try:
                keys[name] = run_key(stage, measure_deps(stage, ws))
            except (UserError, OSError):  # e.g. a params file that is missing now: keep its state
                pass
    return keys
