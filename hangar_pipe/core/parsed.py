"""The last parse of each YAML file, kept by the file's bytes, so a no-op neither imports nor
runs PyYAML (~15 ms of a ~150 ms `hpipe status`; docs/benchmarks.md, issue 13 part 6).

One entry per file name and kind of read (`.hpipe/parsed/<name hash>.marshal`): the xxh3-128 of
the bytes it was parsed from and the result, marshalled. An entry is used only for the same
bytes, so it can never be stale; one that cannot be read is a miss. Results that marshal cannot
hold (YAML dates, say) are simply not kept. Every guard of the parse (UTF-8, duplicate keys,
alias bombs) ran before an entry was written: bytes that fail a guard are never kept.
"""

from __future__ import annotations

import marshal
import os
from pathlib import Path
from typing import Any

import xxhash

MISS = object()  # what `get` answers when it has nothing for those bytes


class ParsedCache:
    """Parses kept in a folder (`layout.parsed_yaml(root)`), each keyed by file name and bytes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _entry(self, name: str, kind: str) -> Path:
        key = f"{kind}:{name}".encode("utf-8", "surrogateescape")
        return self.folder / f"{xxhash.xxh3_64_hexdigest(key)}.marshal"

    def get(self, name: str, kind: str, raw: bytes) -> Any:
        """The kept result for exactly these bytes, else `MISS`."""
        try:
            digest, value = marshal.loads(self._entry(name, kind).read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return MISS
        return value if digest == xxhash.xxh3_128_hexdigest(raw) else MISS

    def put(self, name: str, kind: str, raw: bytes, value: Any) -> None:
        """Keep a result (if marshal can hold it; a write that fails only costs the next parse)."""
        try:
            blob = marshal.dumps((xxhash.xxh3_128_hexdigest(raw), value))
        except ValueError:
            return
        entry = self._entry(name, kind)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(blob)
            os.replace(tmp, entry)
        except OSError:
            tmp.unlink(missing_ok=True)

