"""Many small file operations in forked worker processes: what makes a push to (or a pull from) a
folder on a local disk fast, and the restore of a big folder output.

Copying one small file costs a dozen system calls with Python between them. Threads do not help
there (the GIL: on 2 cores, 2 threads took 1.3x as long as one), but processes do (2 took 0.55x).
So `run_forked` splits the items over `procs` children made by fork (no start-up, no imports),
each working through its share in order and sending back its results in pickled batches through
a pipe. Only a process with a single thread forks (the CLI; `repro` runs next to the runner's
threads and stays in-process).

A child that fails sends back its exception and stops; the others finish their shares (each item
cleans up after itself), then the first error is raised. Ctrl-C reaches the children too (one
process group); a parent that fails otherwise interrupts them, then waits for them; a parent
killed outright leaves children that stop after the item they are on.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
BATCH = 64  # results per message
FORK_MIN = 256  # items: fewer are done in-process (a fork costs a few milliseconds)


def can_fork() -> bool:
    """Whether forking is safe here: a POSIX fork, and no other thread that could hold a lock."""
    return hasattr(os, "fork") and threading.active_count() == 1


def worth_forking(n: int, procs: int) -> int:
    """How many children to fork for n items (0: do them in-process)."""
    if procs <= 1 or n < FORK_MIN or not can_fork():
        return 0
    return min(procs, n // (FORK_MIN // 2))


def run_forked(items: list[T], work: Callable[[T], R], procs: int, advance: Callable[[int], None]
               ) -> list[tuple[T, R]]:
    """`work` on every item, in `procs` forked children; (item, result) pairs in completion order."""
    children: dict[int, int] = {}  # read end -> pid
    parent = os.getpid()
    for k in range(procs):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read)
            _child(items[k::procs], k, procs, work, write, parent)
        os.close(write)
        children[read] = pid
    try:
        return _collect(items, children, advance)
    except KeyboardInterrupt:  # (Ctrl-C reached the children as well: they stop after their item)
        raise
    except BaseException:
        for pid in children.values():
            _interrupt(pid)
        raise
    finally:
        for read, pid in children.items():
            os.close(read)
            os.waitpid(pid, 0)


def _child(share: list[Any], k: int, procs: int, work: Callable[[Any], Any], fd: int, parent: int) -> None:
    code = 0
    try:
        with os.fdopen(fd, "wb") as out:
            batch: list[tuple[int, Any]] = []
            try:
                for i, item in enumerate(share):
                    if os.getppid() != parent:  # the parent was killed: stop after the item done
                        break
                    batch.append((k + i * procs, work(item)))
                    if len(batch) >= BATCH:
                        pickle.dump(("done", batch), out)
                        out.flush()
                        batch = []
                pickle.dump(("done", batch), out)
            except BaseException as exc:  # (KeyboardInterrupt too: the item cleaned up after itself)
                pickle.dump(("done", batch), out)
                pickle.dump(("error", _portable(exc)), out)
                code = 1
    finally:
        os._exit(code)  # never back into the parent's code, its atexit hooks or its buffers


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _collect(items: list[T], children: dict[int, int], advance: Callable[[int], None]) -> list[tuple[T, Any]]:
    """Read every child's messages until each pipe closes; raise the first error at the end."""
    done: list[tuple[T, Any]] = []
    errors: list[BaseException] = []
    readers = {read: os.fdopen(read, "rb", closefd=False) for read in children}
    with selectors.DefaultSelector() as sel:
        for read in children:
            sel.register(read, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                try:
                    kind, payload = pickle.load(readers[key.fd])
                except EOFError:
                    sel.unregister(key.fd)
                    continue
                if kind == "error":
                    errors.append(payload)
                    continue
                done += [(items[i], result) for i, result in payload]
                advance(len(payload))
    if errors:
        raise errors[0]
    return done


def _interrupt(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pass
