"""The column cache: Hangar columns read in bulk, kept as `.hpipe/columns/<fingerprint>.npy`.

An entry is keyed by its column's fingerprint, so the same data at any commit or branch is one
entry. Entries are written atomically (temp file, fsync, rename): a killed write leaves at most a
hidden `.<name>.*.tmp` file, never a partial entry, and temp files an hour old are removed.

The cache is bounded: after each write, the least recently used entries are evicted until the
cache fits its budget (`HPIPE_COLUMNS_CACHE_MB`, default 1000; 0 turns the cache off). A read
touches the entry's mtime, which is its last use. The entries of the load in progress are never
evicted, and an array larger than the whole budget is not cached. `hpipe gc` removes entries
no Hangar dependency reads (`collect`).

Only the standard library here: `hpipe gc` uses this module without numpy or torch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.errors import UserError

BUDGET_ENV = "HPIPE_COLUMNS_CACHE_MB"
DEFAULT_BUDGET_MB = 1000.0  # several versions of an MNIST- or CIFAR-sized data set, as float32
SUFFIX = ".npy"
STALE_TEMP_S = 3600.0  # a temp file untouched this long is a killed write's, not one in progress


def budget_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """The budget in bytes: `HPIPE_COLUMNS_CACHE_MB` (decimal MB, fractions allowed) or the default."""
    raw = environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return int(DEFAULT_BUDGET_MB * 1e6)
    try:
        mb = float(raw)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb >= 0):
        raise UserError(f"{BUDGET_ENV} must be a size in MB (0 turns the column cache off), not '{raw}'")
    return int(mb * 1e6)


@dataclass(frozen=True)
class Entry:
    """A file in the cache folder: an entry, or a temp file a write left."""

    path: Path
    size: int
    used: float  # mtime: when it was written or last read

    @property
    def fingerprint(self) -> str:
        return self.path.name[: -len(SUFFIX)]


def choose_evictions(entries: Iterable[Entry], budget: int, keep: Collection[str]) -> list[Entry]:
    """The least recently used entries (not in `keep`) to remove so that the rest fit in `budget`."""
    ordered = sorted(entries, key=lambda e: (e.used, e.path.name))
    total = sum(e.size for e in ordered)
    evict: list[Entry] = []
    for entry in ordered:
        if total <= budget:
            break
        if entry.fingerprint not in keep:
            evict.append(entry)
            total -= entry.size
    return evict


def stale_temps(temps: Iterable[Entry], now: float) -> list[Entry]:
    """Temp files left by killed writes: untouched for `STALE_TEMP_S`."""
    return [t for t in temps if now - t.used > STALE_TEMP_S]


@dataclass(frozen=True)
class ColumnCache:
    folder: Path
    budget: int = int(DEFAULT_BUDGET_MB * 1e6)

    @classmethod
    def from_env(cls, folder: Path) -> ColumnCache:
        return cls(folder, budget_from_env())

    def path(self, fingerprint: str) -> Path:
        return self.folder / f"{fingerprint}{SUFFIX}"

    def hit(self, fingerprint: str) -> Path | None:
        """The entry's path, marked as used now; None when there is none."""
        path = self.path(fingerprint)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        except OSError:  # not ours to touch: still readable, only its last use is not recorded
            return path if path.exists() else None
        return path

    def add(self, fingerprint: str, data: bytes, in_use: Collection[str] = ()) -> bool:
        """Write an entry atomically, then evict to fit the budget, sparing it and `in_use`.

        An entry larger than the whole budget is not written (False)."""
        if len(data) > self.budget:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(fingerprint), data)
        self.evict({fingerprint, *in_use})
        return True

    def scan(self) -> tuple[list[Entry], list[Entry]]:
        """(entries, temp files) in the folder; other files are left alone."""
        entries: list[Entry] = []
        temps: list[Entry] = []
        try:
            listing = list(os.scandir(self.folder))
        except FileNotFoundError:
            return entries, temps
        for item in listing:
            name = item.name
            is_temp = name.startswith(".") and name.endswith(".tmp")
            if not is_temp and (name.startswith(".") or not name.endswith(SUFFIX)):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile by another process
                continue
            (temps if is_temp else entries).append(Entry(Path(item.path), st.st_size, st.st_mtime))
        return entries, temps

    def evict(self, keep: Collection[str]) -> list[Entry]:
        """Remove least recently used entries (never those in `keep`) until the cache fits its
        budget, and stale temp files; what was removed."""
        entries, temps = self.scan()
        removed = stale_temps(temps, time.time()) + choose_evictions(entries, self.budget, keep)
        for entry in removed:
            entry.path.unlink(missing_ok=True)
        return removed

    def collect(self, keep: Collection[str], dry_run: bool = False) -> tuple[int, int]:
        """For gc: remove every entry whose fingerprint is not in `keep`, and stale temp files;
        (files, bytes) removed, or that would be."""
        entries, temps = self.scan()
        removed = stale_temps(temps, time.time()) + [e for e in entries if e.fingerprint not in keep]
        if not dry_run:
            for entry in removed:
                entry.path.unlink(missing_ok=True)
        return len(removed), sum(e.size for e in removed)
