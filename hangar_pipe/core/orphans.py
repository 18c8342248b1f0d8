"""Stage processes a killed hpipe left running, found and stopped by the next `hpipe repro`.

Each stage command runs in its own process group (so Ctrl-C and a failure stop it whole). A
SIGKILL of hpipe cannot stop it, so its group is recorded in `.hpipe/running/<pgid>` while it
runs; the next repro, holding the repro mutex, stops every group still recorded before it
starts anything. A stage never runs twice at once. A recorded group is only signalled while it
is the same one: its leader's start time must match, or the leader is gone and the group lives
on (the kernel does not reuse a pid while a group of that id exists).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    fields = _stat(pid)
    return fields[19] if fields else None


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie, dead but not yet reaped, does not)."""
    if Path("/proc/self/stat").exists():
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (f := _stat(entry.name)) and f[2] == str(pgid) and f[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Orphan:
    """A stage's process group left running by a killed run."""

    stage: str
    pgid: int


class RunningStages:
    """`.hpipe/running/`: one small file per stage process group running now."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, pgid: int, stage: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"stage": stage, "start": start_time(pgid), "hpipe": os.getpid()}
        tmp = self.folder / f".{pgid}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.folder / str(pgid))

    def remove(self, pgid: int) -> None:
        (self.folder / str(pgid)).unlink(missing_ok=True)

    def stop_orphans(self, grace: float = 5.0) -> list[Orphan]:
        """Stop (TERM, then KILL after `grace` s) every recorded group still running; forget all."""
        if not self.folder.is_dir():
            return []
        stopped = []
        for path in self.folder.iterdir():
            if not path.name.isdigit():
                path.unlink(missing_ok=True)  # a temp file of a killed write
                continue
            orphan = self._orphan(int(path.name), path)
            if orphan is not None:
                stop_group(orphan.pgid, grace)
                stopped.append(orphan)
            path.unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _orphan(pgid: int, path: Path) -> Orphan | None:
        """The recorded group if it still runs and is the one recorded."""
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = {}
        if not group_alive(pgid):
            return None
        now = start_time(pgid)
        if now is not None and record.get("start") not in (None, now):
            return None  # the pid is another process's now, leading a group of its own
        return Orphan(str(record.get("stage", "?")), pgid)


def stop_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to `grace` seconds for it to go, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)
