"""Writing to a Hangar repository safely: one writer, who holds the lock, and recovery after a kill.

hpipe leaves a marker, `.hangar/hpipe-writer.json`, while one of its stages holds Hangar's writer
lock: the process id, host, stage and lock id. With it a held lock can be explained (a live hpipe
stage: wait; a killed one: `hpipe data unlock`), and uncommitted staging left by a killed hpipe
writer can be told apart from someone else's work and discarded before the next write.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.errors import UserError
from hangar_pipe.hangar import compat
from hangar_pipe.hangar.store import HangarStore

MARKER = "hpipe-writer.json"


def _marker_path(repo: Path) -> Path:
    return repo / ".hangar" / MARKER


def read_marker(repo: Path) -> dict[str, Any] | None:
    try:
        marker: dict[str, Any] = json.loads(_marker_path(repo).read_text())
        return marker
    except (FileNotFoundError, ValueError):
        return None


def _alive(marker: dict[str, Any]) -> bool:
    if marker.get("host") != socket.gethostname():
        return True  # cannot tell: assume it is
    try:
        os.kill(int(marker["pid"]), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def describe_lock(repo: Path) -> tuple[str, bool] | None:
    """(who holds the writer lock, whether it is stale) or None when the lock is free."""
    store = HangarStore(repo)
    try:
        holder = store.writer_lock()
    finally:
        store.close()
    if holder is None:
        return None
    marker = read_marker(repo)
    if marker and marker.get("lock") == holder:
        who = (f"hpipe stage '{marker.get('stage')}' (process {marker.get('pid')} on"
               f" {marker.get('host')}, since {marker.get('started')})")
        return who, not _alive(marker)
    return f"another Hangar writer (lock id {holder})", False


def check_lock(repo: Path) -> None:
    """Raise a UserError saying who to wait for, or how to release a stale lock."""
    held = describe_lock(repo)
    if held is None:
        return
    who, stale = held
    if stale:
        raise UserError(f"the Hangar writer lock of {repo} was left by a killed run: {who}."
                        " Release it with: hpipe data unlock")
    if who.startswith("hpipe"):
        raise UserError(f"the Hangar writer lock of {repo} is held by {who}; wait for it to finish")
    raise UserError(f"the Hangar writer lock of {repo} is held by {who}; wait for it to close."
                    " If no program is writing (one crashed), release it with: hpipe data unlock")


def open_repository(repo: Path) -> Any:
    """A hangar Repository for `repo`, initialised if the folder holds none yet."""
    hangar = compat.import_hangar()
    with compat.quiet():
        if (repo / ".hangar").is_dir():
            return hangar.Repository(str(repo), exists=True)
        repo.mkdir(parents=True, exist_ok=True)
        repository = hangar.Repository(str(repo), exists=False)
        repository.init(user_name="hpipe", user_email="hpipe@localhost")
        return repository


@contextlib.contextmanager
def writer(repo: Path, branch: str, stage: str) -> Iterator[Any]:
    """A writer checkout of `branch` (created from HEAD if new), with the hpipe marker in place.

    Staged changes already there are never touched: the writer stops and says so. An exception
    inside the block (a failure, Ctrl-C, SIGTERM) discards what this writer staged and removes
    the marker, so only a SIGKILL leaves a marker behind, and `unlock` deals with that.
    """
    repository = open_repository(repo)
    if (repo / ".hangar" / "ref.lmdb").exists():
        check_lock(repo)
    with compat.quiet():
        co = repository.checkout(write=True)
    try:
        if co.diff.status() == "DIRTY":  # (fast: compat.staged_status)
            raise UserError(f"the staging area of {repo} (branch '{co.branch_name}') has uncommitted"
                            " changes; commit or reset them before an hpipe stage writes")
        if co.branch_name != branch:
            co.close()
            co = None
            if branch not in repository.list_branches():
                repository.create_branch(branch)
            with compat.quiet():
                co = repository.checkout(write=True, branch=branch)
        atomic_write(_marker_path(repo), json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "stage": stage,
            "lock": co._writer_lock, "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        try:
            yield co
        except BaseException:
            with compat.quiet():
                if co.diff.status() == "DIRTY":  # (Hangar refuses to reset a clean staging area)
                    co.reset_staging_area()
            raise
        finally:
            _marker_path(repo).unlink(missing_ok=True)
    finally:
        if co is not None:
            co.close()


def unlock(repo: Path) -> str:
    """Force-release the writer lock. Staging left by a killed hpipe writer (the marker names the
    held lock and its process is gone) is discarded with it; anyone else's staging is kept."""
    killed = describe_lock(repo)
    marker = read_marker(repo)
    ours = bool(killed and killed[1] and marker)
    repository = open_repository(repo)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        repository.force_release_writer_lock()
    if not ours:
        return "Released."
    with compat.quiet():
        co = repository.checkout(write=True)
        try:
            dirty = co.diff.status() == "DIRTY"
            if dirty:
                co.reset_staging_area()
        finally:
            co.close()
    _marker_path(repo).unlink(missing_ok=True)
    return ("Released, and discarded what the killed run had staged." if dirty else "Released.")
