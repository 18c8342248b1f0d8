"""The core's kinds: files and folders of the project (deps and outs), and the code of `uses:` stages."""

from __future__ import annotations

import functools
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.fingerprint import fingerprint_path
from hangar_pipe.core.kinds import Kind, Record
from hangar_pipe.core.params import read_metrics
from hangar_pipe.errors import UserError


@dataclass(frozen=True)
class PathDep(Kind):
    """A file or folder in the project, by content hash."""

    path: str  # project-relative, posix
    tag: ClassVar[str] = "path"

    @property
    def key(self) -> str:
        return self.path

    @classmethod
    def key_of(cls, rec: Record) -> str:
        return str(rec["path"])

    @property
    def edges(self) -> tuple[str, ...]:
        return (self.path,)

    @property
    def path_edges(self) -> tuple[str, ...]:
        return (self.path,)

    def measure(self, ws: Workspace) -> Record | None:
        fp = fingerprint_path(os.path.join(ws.root, self.path), ws.stat_cache)
        return None if fp is None else {"path": self.path, **fp.record()}

    def identity(self, rec: Record) -> Any:
        return rec.get("hash")

    def missing(self, ws: Workspace, produced: Callable[[str], bool]) -> str | None:
        if produced(self.path) or (ws.root / self.path).exists():
            return None
        return f"dependency '{self.path}' does not exist and no stage produces it"

    def file(self, ws: Workspace) -> Path:
        return ws.root / self.path

    @classmethod
    def recorded_metrics(cls, rec: Record) -> dict[str, Any] | None:
        metrics = rec.get("metrics")
        return metrics if isinstance(metrics, dict) else None


@dataclass(frozen=True)
class PathOut(PathDep):
    """A file or folder a stage writes; `role` marks metrics and plots files."""

    role: str = "out"  # out | metric | plot
    cache: bool = True
    persist: bool = False

    @property
    def cached(self) -> bool:
        return self.cache

    @property
    def persists(self) -> bool:
        return self.persist

    def missing(self, ws: Workspace, produced: Callable[[str], bool]) -> str | None:
        """Refuse an output whose folder leads out of the project through a symbolic link."""
        if link := outside_link(ws.root, posixpath.dirname(self.path)):
            return f"output '{self.path}' is outside the project: {link}"
        return None

    def clean(self, ws: Workspace) -> None:
        """Remove the file or folder (a link itself, never what it points to); refuse a path whose
        folder leads outside the project."""
        if self.persist:
            return
        path = self.file(ws)
        if link := outside_link(ws.root, posixpath.dirname(self.path)):
            raise UserError(f"output '{self.path}' is outside the project: {link}; not removed")
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            import shutil  # (lazily: see cli/app.terminal_width)

            shutil.rmtree(path)

    def ignored(self, ws: Workspace) -> list[Path]:
        """A cached output is hpipe's to keep, not git's; a `cache: false` one is the user's."""
        return [self.file(ws)] if self.cache else []

    def lock_record(self, rec: Record, ws: Workspace) -> Record:
        if self.role == "metric":  # metric values go in the lock, for `hpipe metrics diff`
            return {**rec, "metrics": read_metrics(self.file(ws))}
        return rec


def outside_link(root: Path, folder: str) -> str | None:
    """Why a project folder (relative, posix; '' or '.' for the root) is really outside the project
    `root` (a real path): '<link> is a symbolic link to <target>'; None when it is inside.

    Only the folders that exist are looked at, with lstat; a link is resolved only when there is one.
    """
    root = _real(root)
    current = str(root)
    for part in folder.split("/") if folder not in ("", ".") else ():
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None  # hpipe (or the stage) creates the rest as plain folders
        if stat.S_ISLNK(mode) and not is_inside(root, os.path.realpath(current)):
            rel = os.path.relpath(current, root).replace(os.sep, "/")
            return f"'{rel}' is a symbolic link to {os.path.realpath(current)}"
    return None


@functools.cache
def _real(root: Path) -> Path:
    return Path(os.path.realpath(root))


def is_inside(root: Path, path: str) -> bool:
    """Whether a real path is the (real) root or below it."""
    return os.path.commonpath([str(root), path]) == str(root)


@dataclass(frozen=True)
class CodeDep(Kind):
    """The source file of a `uses:` callable's module, so editing the code reruns the stage."""

    module: str
    source: str  # absolute; not recorded, so the lock stays portable
    tag: ClassVar[str] = "code"

    @property
    def key(self) -> str:
        return f"code:{self.module}"

    def measure(self, ws: Workspace) -> Record | None:
        fp = fingerprint_path(self.source, ws.stat_cache)
        return None if fp is None else {"code": self.module, **fp.record()}

    def identity(self, rec: Record) -> Any:
        return rec.get("hash")
