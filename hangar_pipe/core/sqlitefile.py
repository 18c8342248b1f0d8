"""hpipe's SQLite state files (run history, run cache): a damaged one is moved aside, never a traceback.

`.hpipe/` is disposable, so a file SQLite calls corrupt ("file is not a database", "database disk
image is malformed") is renamed to `<name>.corrupt-<time>` (kept for a post-mortem), a warning
says so in one line, and the operation is retried once on a new, empty file. Other SQLite errors
(a locked or read-only database) are not corruption and propagate.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
Warn = Callable[[str], None]

_CORRUPT, _NOTADB = 11, 26  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)


def damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite's error says the file itself is damaged."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_CORRUPT, _NOTADB)
    text = str(exc)  # pragma: no cover - Python 3.10 has no error codes
    return "not a database" in text or "malformed" in text


def shown(path: Path) -> str:
    """`.hpipe/runs.db` for a file under a project's `.hpipe/`, else the whole path."""
    parts = path.parts
    return "/".join(parts[parts.index(".hpipe"):]) if ".hpipe" in parts else str(path)


def set_aside(path: Path) -> Path:
    """Rename a damaged file (and its journal, WAL and shared-memory files) to `.corrupt-<time>`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("-journal", "-wal", "-shm", ""):
        try:
            path.with_name(path.name + suffix).rename(path.with_name(aside.name + suffix))
        except FileNotFoundError:  # none of that kind, or another hpipe moved it first
            pass
    return aside


def warn_default(message: str) -> None:
    """A warning through Python's `warnings` (the CLI prints it as `hpipe: warning: ...`)."""
    import warnings

    warnings.warn(f"hpipe: {message}", RuntimeWarning, stacklevel=3)


class SqliteFile:
    """One SQLite file, connected per use, its tables created as needed (`schema`)."""

    def __init__(self, path: Path, what: str, schema: tuple[str, ...], warn: Warn | None = None) -> None:
        self.path, self.what, self.schema = path, what, schema
        self.warn = warn or warn_default

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            for statement in self.schema:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def _once(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._connect()
        try:
            return work(db)
        finally:
            db.close()

    def use(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)`; if the file is damaged, move it aside, warn, and do it on a new one."""
        try:
            return self._once(work)
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            reason = str(exc)
        aside = set_aside(self.path)
        self.warn(f"the {self.what} {shown(self.path)} was damaged ({reason}); moved it aside"
                  f" to {aside.name} and started a new one")
        return self._once(work)
