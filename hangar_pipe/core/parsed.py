"""The last parse of each YAML file, kept by the file's bytes, so a no-op neither imports nor
runs PyYAML (~15 ms of a ~150 ms `hpipe status`; docs/benchmarks.md, issue 13 part 6).

One entry per file and kind of read (`.hpipe/parsed/<name hash>.marshal`): the xxh3-128 of
`FORMAT` and the bytes it was parsed from, and the result, marshalled. An entry is used only for
the same bytes and format, so it cannot be stale; one that cannot be read is a miss. Results
that marshal cannot hold (YAML dates, say) are simply not kept. Every guard of the parse (UTF-8,
duplicate keys, alias bombs) ran before an entry was written: bytes that fail a guard are never
kept. Only files inside the project are kept, and never the remote settings (credentials).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import threading
from pathlib import Path
from typing import Any

import xxhash

MISS = object()  # what `get` answers when it has nothing for those bytes


# Change it whenever what a parse returns changes (core/yamlfile.py: its guards, the line
# numbers, the loader): entries of another format are misses.
FORMAT = b"hpipe-parsed-1:"


def _digest(raw: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(FORMAT + raw)


class ParsedCache:
    """Parses of the files under `root`, kept in `layout.parsed_yaml(root)`, each keyed by file
    name and bytes."""

    def __init__(self, root: Path, folder: Path) -> None:
        self.root = root
        self.folder = folder

    def holds(self, path: Path) -> bool:
        """Whether a file's parse is kept here: one inside the project (not its `.hpipe/`)."""
        path = Path(os.path.abspath(path))
        return path.is_relative_to(self.root) and not path.is_relative_to(self.folder.parent)

    def _entry(self, name: str, kind: str) -> Path:
        key = f"{kind}:{name}".encode("utf-8", "surrogateescape")
        return self.folder / f"{xxhash.xxh3_64_hexdigest(key)}.marshal"

    def get(self, name: str, kind: str, raw: bytes) -> Any:
        """The kept result for exactly these bytes, else `MISS`."""
        try:
            digest, value = marshal.loads(self._entry(name, kind).read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return MISS
        return value if digest == _digest(raw) else MISS

    def put(self, name: str, kind: str, raw: bytes, value: Any) -> None:
        """Keep a result (if marshal can hold it; a write that fails only costs the next parse)."""
        try:
            blob = marshal.dumps((_digest(raw), value))
        except ValueError:
            return
        entry = self._entry(name, kind)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            self.folder.parent.mkdir(exist_ok=True)  # .hpipe/, in a project that exists
            self.folder.mkdir(exist_ok=True)
            tmp.write_bytes(blob)
            os.replace(tmp, entry)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

