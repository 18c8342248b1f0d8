"""The stat cache: (inode, mtime_ns, size) -> content hash in SQLite, so unchanged files are never re-read.

Only a cache: a damaged file is deleted and rebuilt (with a warning), which costs a re-hash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from hangar_pipe.core.sqlitefile import Warn, damaged, shown, warn_default


class SqliteStatCache:
    """`fingerprint.StatCache` backed by one SQLite file; writes are batched until `flush`."""

    def __init__(self, path: Path, warn: Warn | None = None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, int, int, int, str]] = []
        self._warn = warn or warn_default
        self._rebuilt = False
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY,"
                       " inode INTEGER, mtime_ns INTEGER, size INTEGER, hash TEXT)")
        except BaseException:
            db.close()
            raise
        return db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:
                if not damaged(exc):
                    raise
                self._rebuild(exc)
        assert self._db is not None
        return self._db

    def _rebuild(self, exc: sqlite3.DatabaseError) -> None:
        """Delete the damaged file and start an empty one, once per damage (threads share it)."""
        with self._lock:
            if self._rebuilt and self._db is not None:
                return  # another thread rebuilt it
            self._rebuilt = True
            if self._db is not None:
                self._db.close()
            for suffix in ("-wal", "-shm", ""):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            self._db = self._open()
        self._warn(f"the stat cache {shown(self.path)} was damaged ({exc}); rebuilt it"
                   " (files are hashed again)")

    def get(self, path: str, st: os.stat_result) -> str | None:
        try:
            row = self._conn().execute("SELECT inode, mtime_ns, size, hash FROM files WHERE path = ?",
                                       (path,)).fetchone()
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            self._rebuild(exc)
            return None
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
            pass  # only a cache: losing an update costs a re-hash, never a wrong answer
        if self._db is not None:
            self._db.close()
            self._db = None
