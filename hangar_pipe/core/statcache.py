"""The stat cache: (inode, mtime_ns, size) -> content hash in SQLite, so unchanged files are never re-read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


class SqliteStatCache:
    """`fingerprint.StatCache` backed by one SQLite file; writes are batched until `flush`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, int, int, int, str]] = []

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None,
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
            pass  # only a cache: losing an update costs a re-hash, never a wrong answer
        if self._db is not None:
            self._db.close()
            self._db = None
