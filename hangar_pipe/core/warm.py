"""hpipe's end of the warm worker (the zygote, core/zygote.py): built-in stages pay the heavy
imports once per `hpipe repro`, not once per stage.

`WarmWorker.spawn` asks the zygote for a child running a module as `python -m MODULE ARGS` would;
it answers None, and the caller starts a fresh process as before, wherever the zygote cannot
stand in for one: not Linux (PR_SET_PDEATHSIG, descriptor passing), `HPIPE_NO_WARM=1`, an
environment that differs from the zygote's in what imports read (anything but `HPIPE_*` and
PYTHONPATH), a stage whose folders shadow a module the zygote imported, or a zygote that died.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

# the top-level modules of a bare interpreter first: a stage's folder cannot shadow them
ZYGOTE = ("import sys; startup = {m.partition('.')[0] for m in sys.modules};"
          " from hangar_pipe.core.zygote import main; sys.exit(main(sys.argv[1:], startup))")


def supported() -> bool:
    """Whether this platform and environment let the zygote run stages."""
    return (sys.platform.startswith("linux") and hasattr(socket, "send_fds")
            and os.environ.get("HPIPE_NO_WARM", "") in ("", "0"))


def import_env(env: dict[str, str]) -> dict[str, str]:
    """What of an environment imports may read: all but hpipe's per-stage variables and PYTHONPATH
    (the zygote sets up sys.path itself)."""
    return {k: v for k, v in env.items() if not k.startswith("HPIPE_") and k != "PYTHONPATH"}


class WarmProcess:
    """A stage child of the zygote, waited for like a `subprocess.Popen`."""

    def __init__(self, pid: int, answer: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._answer = answer
        self._reading = threading.Lock()  # one thread at a time reads the zygote's answer

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code (negative: the signal that killed it); TimeoutExpired after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reading.acquire(timeout=-1 if timeout is None else timeout):
            raise subprocess.TimeoutExpired(f"stage process {self.pid}", timeout or 0.0)
        try:
            if self.returncode is None:
                self._answer.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
                try:
                    data = _receive(self._answer)
                except TimeoutError:
                    raise subprocess.TimeoutExpired(f"stage process {self.pid}", timeout or 0.0) from None
                self._answer.close()
                self.returncode = int(str(data["status"])) if "status" in data else self._lost()
            return self.returncode
        finally:
            self._reading.release()

    def _lost(self) -> int:
        """The zygote died before the stage: wait for the stage's group to go; its status is unknown."""
        from hangar_pipe.core.orphans import group_alive

        while group_alive(self.pid):
            time.sleep(0.1)
        return 1


def _receive(sock: socket.socket) -> dict[str, object]:
    """One answer from the zygote; {} when it closed the socket without one."""
    try:
        data = sock.recv(4096)
    except TimeoutError:
        raise
    except OSError:
        return {}
    return json.loads(data) if data else {}


class WarmWorker:
    """The zygote of one run: started on the first built-in stage (from the main thread, whose end
    ends it), closed with the run."""

    def __init__(self, warm_up: list[str]) -> None:
        self.warm_up = warm_up  # the modules to import before the stages ask for them
        self.env = dict(os.environ)
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.broken = False

    def start(self) -> None:
        """Start the zygote unless it runs (or could not run)."""
        if self.sock is not None or self.broken:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        flags = ["-P"] if sys.version_info >= (3, 11) else []  # no folder of ours before the site's
        argv = [sys.executable, *flags, "-c", ZYGOTE, str(theirs.fileno()), str(os.getpid()),
                *self.warm_up]
        try:
            self.proc = subprocess.Popen(argv, cwd="/", env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, pass_fds=[theirs.fileno()],
                                         start_new_session=True)
        except OSError:
            self.broken = True
            ours.close()
            return
        finally:
            theirs.close()
        self.sock = ours

    def spawn(self, module: str, args: list[str], *, env: dict[str, str], cwd: str, stdout: int | None,
              needs: list[str] | None = None) -> WarmProcess | None:
        """Run `python -m MODULE ARGS` in a child of the zygote, forked once the zygote has
        imported `needs` (those it was to import ahead); None: start a fresh process."""
        if self.sock is None or self.broken or import_env(env) != import_env(self.env):
            return None
        message = json.dumps({"module": module, "args": args, "env": env, "cwd": cwd, "needs": needs or []}).encode()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            out = 1 if stdout is None else stdout
            socket.send_fds(self.sock, [message], [stdin, out, 2, theirs.fileno()])
        except OSError:
            ours.close()
            self.broken = True
            return None
        finally:
            os.close(stdin)
            theirs.close()
        answer = _receive(ours)
        if "pid" not in answer:  # refused, or the zygote died
            ours.close()
            self.broken = self.broken or "refused" not in answer
            return None
        return WarmProcess(int(str(answer["pid"])), ours)

    def close(self) -> None:
        """End the zygote: it holds nothing to clean up, and may be in the middle of an import."""
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
