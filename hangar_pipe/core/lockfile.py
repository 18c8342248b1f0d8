"""pipeline.lock (the lockfile): what each stage ran with, as deterministic YAML written atomically after each stage.

Each stage's entry is rendered to text once, when it is set; a write joins the rendered
entries (sorted by stage name) and renames a temp file over the lock. Nothing is re-parsed
or re-serialised, so recording N stages costs O(N) YAML work, not O(N^2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.kinds import tag_of
from hangar_pipe.core.yamlfile import dump, load_data
from hangar_pipe.errors import UserError

SCHEMA = "hpipe/1"
_HEADER = f"# Written by hpipe; commit it with pipeline.yaml.\nschema: {SCHEMA}\nstages:\n"


def _render(name: str, entry: dict[str, Any]) -> str:
    text = dump({name: entry})
    return "".join("  " + line + "\n" for line in text.splitlines())


def _shape_problem(entry: Any) -> tuple[str, str] | None:
    """(where, what) is wrong with the shape of a stage's entry, e.g. ('.deps[0]', 'expected ...')."""
    if not isinstance(entry, dict):
        return "", "expected a mapping"
    for section in ("deps", "outs"):
        records = entry.get(section, [])
        if not isinstance(records, list):
            return f".{section}", "expected a list"
        for i, rec in enumerate(records):
            if tag_of(rec) is None:
                first = next(iter(rec), None) if isinstance(rec, dict) else None
                what = (f"a record of an unknown kind '{first}' (is the plugin that defines it registered?)"
                        if isinstance(first, str) and isinstance(rec[first], str)
                        else "expected a record such as {path: ..., hash: ...}")
                return f".{section}[{i}]", what
    params = entry.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        return ".params", "expected {file: {key: value}}"
    return None


class LockFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._rendered: dict[str, str] = {}
        if path.exists():
            data = load_data(path, path.name) or {}
            stages = data.get("stages") if isinstance(data, dict) else None
            if not isinstance(stages, dict) or data.get("schema") != SCHEMA:
                raise UserError(f"not a {SCHEMA} lock file (delete it to start over)", file=path.name)
            for name, entry in stages.items():
                if problem := _shape_problem(entry):
                    where, what = problem
                    raise UserError(f"{what} (delete the stage's entry, or the file, to start over)",
                                    file=path.name, key=f"stages.{name}{where}")
            self.entries = stages

    def get(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        """Record a stage that ran, and write the lock file."""
        self.entries[name] = entry
        self._rendered[name] = _render(name, entry)
        self.write()

    def keep_only(self, names: set[str]) -> None:
        """Forget stages that are no longer in the pipeline (applied at the next write)."""
        for gone in set(self.entries) - names:
            del self.entries[gone]
            self._rendered.pop(gone, None)

    def write(self) -> None:
        parts = [_HEADER]
        for name in sorted(self.entries):
            if name not in self._rendered:
                self._rendered[name] = _render(name, self.entries[name])
            parts.append(self._rendered[name])
        atomic_write(self.path, "".join(parts).encode())
