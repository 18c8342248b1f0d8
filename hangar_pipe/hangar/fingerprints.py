"""Column fingerprints by (commit digest, column), kept in `.hpipe/hangar-fingerprints.json`.

A Hangar commit never changes, so neither does a column's fingerprint at it: once computed, the
no-op path reads it from this file instead of decompressing and hashing the commit's records.
Only the standard library; the file is written atomically, only when an entry was added, and a
file that cannot be read or parsed (damaged, truncated, another format) is ignored and rewritten.
It holds the newest `MAX_ENTRIES` entries.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.hangar.store import ColumnState

FORMAT = 1
MAX_ENTRIES = 4096


@dataclass
class FingerprintCache:
    """`commit column` -> [fingerprint, sample count, schema repr], loaded on first use."""

    file: Path
    _entries: dict[str, list[Any]] | None = None
    _dirty: bool = field(default=False)

    def _load(self) -> dict[str, list[Any]]:
        if self._entries is None:
            try:
                doc = json.loads(self.file.read_bytes())
                entries = doc["entries"] if doc.get("format") == FORMAT else {}
                self._entries = entries if isinstance(entries, dict) else {}
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                self._entries = {}
        return self._entries

    def get(self, commit: str, column: str) -> ColumnState | None:
        """The column's state at the commit as cached, or None (not cached, or a damaged entry)."""
        entry = self._load().get(f"{commit} {column}")
        if not isinstance(entry, list) or len(entry) != 3:
            return None
        fingerprint, samples, schema = entry
        try:
            state = ColumnState(fingerprint, samples, ast.literal_eval(schema))
        except (TypeError, ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        ok = isinstance(fingerprint, str) and type(samples) is int and isinstance(state.schema, dict)
        return state if ok else None

    def put(self, commit: str, column: str, state: ColumnState) -> None:
        entries = self._load()
        entries[f"{commit} {column}"] = [state.fingerprint, state.samples, repr(state.schema)]
        self._dirty = True

    def save(self) -> None:
        """Write the file if an entry was added (the newest MAX_ENTRIES); a failure to write is
        not an error: the fingerprints are computed again next time."""
        if not self._dirty or self._entries is None:
            return
        kept = dict(list(self._entries.items())[-MAX_ENTRIES:])
        try:
            target = self.file.resolve()  # (an experiment's workspace links to the project's file)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, json.dumps({"format": FORMAT, "entries": kept}).encode())
        except OSError:
            return
        self._dirty = False
