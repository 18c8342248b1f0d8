"""Local state under `.hpipe/`: the stat cache (SQLite), the one-repro-at-a-time mutex, atomic writes."""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from hangar_pipe.errors import UserError

STATE_DIR = ".hpipe"


@functools.cache
def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: temp file in the same folder, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:  # keep the file's mode; a new one gets the usual 0666 & ~umask, not mkstemp's 0600
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class StateDB:
    """Stat cache: (inode, mtime_ns, size) -> content hash, so unchanged files are never re-read."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, int, int, int, str]] = []

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._dir.mkdir(exist_ok=True)
            self._db = sqlite3.connect(self._dir / "state.db", timeout=10, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY,"
                             " inode INTEGER, mtime_ns INTEGER, size INTEGER, hash TEXT)")
        return self._db

    def get(self, path: str, st: os.stat_result) -> str | None:
        row = self._conn().execute("SELECT inode, mtime_ns, size, hash FROM files WHERE path = ?",
                                   (path,)).fetchone()
        if row and tuple(row[:3]) == (st.st_ino, st.st_mtime_ns, st.st_size):
            return str(row[3])
        return None

    def put(self, path: str, st: os.stat_result, digest: str) -> None:
        self._pending.append((path, st.st_ino, st.st_mtime_ns, st.st_size, digest))

    def flush(self) -> None:
        if not self._pending:
            return
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", self._pending)
        self._pending.clear()

    def close(self) -> None:
        try:
            self.flush()
        except sqlite3.Error:
            pass  # the stat cache is only a cache: losing an update costs a re-hash, never a wrong answer
        if self._db is not None:
            self._db.close()
            self._db = None


class ProjectLock:
    """Only one `hpipe repro` per project: an flock on `.hpipe/repro.lock` holding the owner's pid.

    The kernel drops an flock when its process dies, so a lock left by a killed run is free again;
    the stale pid left in the file is reported as an interrupted run and taken over.
    """

    def __init__(self, state_dir: Path, wait: float = 3.0) -> None:
        self.path = state_dir / "repro.lock"
        self.wait = wait
        self.stale_pid: int | None = None
        self._fd: int | None = None

    def acquire(self) -> ProjectLock:
        self.path.parent.mkdir(exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    who = f"process {holder}" if holder else "another process"
                    raise UserError(f"another hpipe repro is running ({who} holds {self.path});"
                                    " wait for it to finish") from None
                time.sleep(0.05)
        old = _read_pid(fd)
        if old and old != os.getpid():
            self.stale_pid = old
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except ValueError:
        return None
