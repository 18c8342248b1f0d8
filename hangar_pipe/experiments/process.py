"""A point's process: `hpipe -C WORKSPACE repro ...`, forked from `exp run` itself.

Forking skips what a fresh `python -m hangar_pipe.cli` would pay again for every point (the
interpreter and hpipe's imports, ~0.13 s of a restored point's ~0.3 s) and keeps a point's
isolation: its own process, its own working folder, a crash fails the point only. `exp run`
forks from its main thread only, and holds no open database or Hangar environment when it does.

In the child, before `repro` starts: output to the point's log, stdin from /dev/null, SIGINT
handled as Ctrl-C (even under nohup), its CPUs (`sched_setaffinity`) and thread count, and on
Linux SIGINT when `exp run` dies (PR_SET_PDEATHSIG), so a killed `exp run` leaves no point running.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


class PointProcess:
    """One forked point: poll it, interrupt it, wait for it."""

    def __init__(self, argv: list[str], log: Path, cpus: list[int] | None, threads: int) -> None:
        self.code: int | None = None
        self._interrupted = False
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            _child(argv, log, cpus, threads, parent)

    def poll(self) -> int | None:
        """The exit code once the point has ended (-N: killed by signal N), else None."""
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def interrupt(self) -> None:
        """SIGINT, as Ctrl-C (once: a second one would stop its stages harder)."""
        if self.poll() is None and not self._interrupted:
            os.kill(self.pid, signal.SIGINT)
            self._interrupted = True

    def wait(self, timeout: float) -> int:
        """Wait up to `timeout` s for the point to stop, then kill it."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.code = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.02)
        return self.code if self.code is not None else -signal.SIGKILL


def _child(argv: list[str], log: Path, cpus: list[int] | None, threads: int, parent: int) -> None:
    """The point's process: set up, run `hpipe` with argv, and exit with its code (never returns)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _redirect(log)
        if cpus:
            os.sched_setaffinity(0, cpus)
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # `exp run` died before that: do not start
                os._exit(130)
        os.environ["HPIPE_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)
        from hangar_pipe.cli import main

        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _redirect(log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
