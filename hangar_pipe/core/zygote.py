"""The warm worker: a `python` running `main(FD PARENT_PID MODULE...)`, one per `hpipe repro`.

It imports what the run's built-in stages need (the MODULEs: Hangar, the stages and torch) once,
one module at a time while no request waits, and forks one child per stage that hpipe asks for
over the unix socket FD (hpipe's end: core/warm.py). A request is one SOCK_SEQPACKET message,
JSON `{"module", "args", "env", "cwd", "needs"}`, carrying four descriptors: the stage's stdin, stdout,
stderr and a socket for the answer. The answer is `{"pid": N}` once the child leads a session
of its own (so hpipe can signal its group and record it), then `{"status": CODE}` when it ends
(negative: killed by that signal, as `Popen.returncode`); `{"refused": WHY}` asks hpipe to
start a fresh process instead.

The child is the stage as a fresh `python -m MODULE ARGS...` would be: its own session, the
environment, working folder, sys.path and standard streams it is given, `MODULE` run as
`__main__`, atexit hooks at the end. No torch op runs here, so no thread pool exists to be lost
in a fork; the zygote dies with hpipe (PR_SET_PDEATHSIG) and exits when hpipe closes the socket.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import sys
from dataclasses import dataclass
from typing import IO

MAX_REQUEST = 1 << 20
PR_SET_PDEATHSIG = 1


@dataclass
class Request:
    module: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    needs: list[str]  # modules to have imported before the fork (the stage's own, when warmed up)
    fds: list[int]  # stdin, stdout, stderr, the answer socket

    @property
    def reply(self) -> int:
        return self.fds[3]

    def path(self) -> list[str]:
        """sys.path as `python -m` in `cwd` with this environment starts with, before site's."""
        extra = [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        return [self.cwd, *extra]


def _send(fd: int, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # hpipe is gone or stopped waiting: nobody to tell
        os.write(fd, json.dumps(message).encode())


def _importable(folder: str) -> set[str]:
    """The top-level modules a folder on sys.path provides (a folder without __init__.py would
    only be a namespace package, which any regular module of the name wins over)."""
    names = set()
    for entry in os.scandir(folder):
        name, _, suffix = entry.name.partition(".")
        package = entry.is_dir() and not suffix and os.path.exists(os.path.join(entry.path, "__init__.py"))
        if package or (entry.is_file() and suffix.rpartition(".")[2] in ("py", "pyc", "so")):
            names.add(name)
    return names


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _warm(name: str) -> None:
    """Import a module the stages need; one that fails fails in the stage, as without a zygote."""
    try:
        if name == "hangar_pipe.hangar.compat":
            from hangar_pipe.hangar.compat import import_hangar

            import_hangar()
        else:
            __import__(name)
    except Exception:  # noqa: BLE001, S110 - the stage reports it in its own process
        pass


class Zygote:
    """The serving loop: requests in, children out, exit statuses back.

    Children are reaped on SIGCHLD, whose handler runs between two bytecodes even in the middle
    of a warm-up import: a stage's end is told at once, not after `import torch`.
    """

    def __init__(self, sock: socket.socket, warm_up: list[str], startup: set[str]) -> None:
        self.sock = sock
        self.todo = warm_up  # between two imports a waiting request is served: ingest needs no torch
        self.children: dict[int, int] = {}  # pid -> answer socket
        own = set(filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)))
        self.own_path = list(sys.path)
        self.site = [p for p in sys.path if p not in own]  # the interpreter's own, without PYTHONPATH
        self.startup = startup  # what the interpreter imported before any code of ours: no folder shadows it

    def serve(self) -> Request | None:
        """Serve until hpipe closes the socket (None); in a forked child, that child's request."""
        signal.signal(signal.SIGCHLD, self._reap)
        waiting: list[Request] = []
        while True:
            for ready_now in [r for r in waiting if not set(r.needs) & set(self.todo)]:
                waiting.remove(ready_now)
                if self._fork(ready_now):
                    return ready_now
            ready, _, _ = select.select([self.sock], [], [], 0 if self.todo else None)
            if not ready:
                _warm(self.todo.pop(0))
                continue
            if (request := self._receive()) is None:
                return None
            waiting.append(request)

    def _receive(self) -> Request | None:
        """The next request; None when hpipe has closed its end."""
        while True:
            data, fds, flags, _ = socket.recv_fds(self.sock, MAX_REQUEST, 4)
            if not data and not fds:
                return None
            if len(fds) == 4 and not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                body = json.loads(data)
                return Request(body["module"], body["args"], body["env"], body["cwd"], body["needs"], fds)
            _close(fds)

    def _shadowed(self, request: Request) -> list[str]:
        """Modules imported here that the stage's own folders would shadow in a fresh process."""
        names: set[str] = set()
        for folder in request.path():
            if folder not in self.own_path and os.path.isdir(folder):
                names.update(_importable(folder))
        loaded = {name.partition(".")[0] for name in sys.modules} - self.startup
        return sorted(names & loaded)

    def _fork(self, request: Request) -> bool:
        """Start the stage's child; True in the child. SIGCHLD waits until hpipe has its pid."""
        if shadowed := self._shadowed(request):
            _send(request.reply, {"refused": f"the stage's folders shadow {', '.join(shadowed)}"})
            _close(request.fds)
            return False
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            _close([ready_r, ready_w, request.reply, self.sock.detach(), *self.children.values()])
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return True
        os.close(ready_w)
        os.read(ready_r, 1)  # end of file once the child leads its own session (or died)
        os.close(ready_r)
        _close(request.fds[:3])  # the child's now; the answer socket stays until it ends
        _send(request.reply, {"pid": pid})
        self.children[pid] = request.reply
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return False

    def _reap(self, signum: int, frame: object) -> None:
        """SIGCHLD: tell hpipe how each child that ended did."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if (answer := self.children.pop(pid, None)) is not None:
                _send(answer, {"status": os.waitstatus_to_exitcode(status)})
                os.close(answer)


def _reopen_streams() -> None:
    """sys.stdout and sys.stderr over the stage's descriptors, buffered as Python buffers them."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))  # hpipe starts stages without -u
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "w", closefd=False)
        buffer: IO[bytes] = raw if unbuffered else io.BufferedWriter(raw)
        line = not unbuffered and (fd == 2 or raw.isatty())
        stream = io.TextIOWrapper(buffer, encoding=old.encoding, errors=old.errors,
                                  line_buffering=line, write_through=unbuffered)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def run_stage(request: Request, site: list[str]) -> None:
    """In the forked child: become the stage's process and run its module as `__main__`."""
    import runpy

    for target, fd in enumerate(request.fds[:3]):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    sys.path[:] = list(dict.fromkeys([*request.path(), *site]))
    _reopen_streams()
    sys.argv = [request.module, *request.args]
    runpy.run_module(request.module, run_name="__main__", alter_sys=True)


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when hpipe ends; exit now if it already has."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:
        sys.exit(0)


def main(argv: list[str], startup: set[str]) -> int:
    """Serve FD for hpipe (PARENT_PID), importing MODULE... ahead; `startup`: the top-level modules
    the interpreter had imported before any code of ours ran."""
    die_with_parent(int(argv[1]))
    zygote = Zygote(socket.socket(fileno=int(argv[0])), argv[2:], startup)
    request = zygote.serve()
    if request is not None:
        run_stage(request, zygote.site)
    return 0

