"""One `hpipe repro` per project at a time: an flock on `.hpipe/repro.lock` holding the owner's pid.

The kernel drops an flock when its process dies, so a mutex left by a killed run is free again;
the stale pid left in the file is reported as an interrupted run and taken over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from hangar_pipe.errors import UserError


class ReproMutex:
    def __init__(self, path: Path, wait: float = 3.0) -> None:
        self.path = path
        self.wait = wait
        self.stale_pid: int | None = None  # the pid a killed run left behind, once acquired
        self._fd: int | None = None

    def acquire(self) -> ReproMutex:
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

    def __enter__(self) -> ReproMutex:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except ValueError:
        return None


def held(path: Path) -> bool:
    """Whether another process holds the flock on `path` now (a file that is not there: no)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False
