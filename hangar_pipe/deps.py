"""Dependency and output kinds.

Every kind is a small frozen dataclass with a `key` (unique within a stage), `edges`
(what links producers to consumers in the graph) and `measure(ctx)`, which returns the
record stored in pipeline.lock, or None when the thing is missing. `changes(old, new, ctx)`
says how two records differ, as plain data (`"modified"`, or a dict for kinds that can
say more). Hangar columns (hangar_deps.py) plug in with the same members.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from hangar_pipe.errors import UserError
from hangar_pipe.fingerprint import StatCache, fingerprint_path
from hangar_pipe.yamlfile import load_data

Record = dict[str, Any]
Where = tuple[str, "int | None", str]  # (file, line, key path) of a declaration, for errors


@dataclass
class Context:
    """What measuring needs: the project root, the stat cache, parsed params files, Hangar data."""

    root: Path
    stat_cache: StatCache | None = None
    data: Any = None  # hangar_deps.HangarData, for Hangar kinds
    _params: dict[str, Any] = field(default_factory=dict)

    def params_file(self, rel: str, where: Where) -> Any:
        if rel not in self._params:
            path = self.root / rel
            if not path.is_file():
                raise UserError(f"params file '{rel}' not found", file=where[0], line=where[1],
                                key=where[2])
            self._params[rel] = load_data(path, rel) or {}
        return self._params[rel]

    def forget_params(self) -> None:
        self._params.clear()


class Kind(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def edges(self) -> tuple[str, ...]: ...

    def measure(self, ctx: Context) -> Record | None: ...

    def changes(self, old: Record, new: Record, ctx: Context) -> Any: ...


def record_key(rec: Record) -> str:
    """A lock record's identity: its first field names the kind (`path: x` -> 'x', `code: m` -> 'code:m')."""
    kind, value = next(iter(rec.items()))
    return str(value) if kind == "path" else f"{kind}:{value}"


def hash_changed(old: Record, new: Record, ctx: Context) -> str | None:
    return None if old.get("hash") == new.get("hash") else "modified"


@dataclass(frozen=True)
class PathDep:
    """A file or folder in the project."""

    path: str
    kind: ClassVar[str] = "path"

    changes = staticmethod(hash_changed)

    @property
    def key(self) -> str:
        return self.path

    @property
    def edges(self) -> tuple[str, ...]:
        return (self.path,)

    def measure(self, ctx: Context) -> Record | None:
        fp = fingerprint_path(os.path.join(ctx.root, self.path), ctx.stat_cache)
        return None if fp is None else {"path": self.path, **fp.record()}


@dataclass(frozen=True)
class PathOut(PathDep):
    """A file or folder a stage writes; `role` marks metrics and plots files."""

    role: str = "out"  # out | metric | plot
    cache: bool = True


@dataclass(frozen=True)
class CodeDep:
    """The source file of a `uses:` callable's module, so editing the code reruns the stage."""

    module: str
    file: str  # absolute; not recorded, so the lock stays portable
    kind: ClassVar[str] = "code"

    changes = staticmethod(hash_changed)
    edges: ClassVar[tuple[str, ...]] = ()

    @property
    def key(self) -> str:
        return f"code:{self.module}"

    def measure(self, ctx: Context) -> Record | None:
        fp = fingerprint_path(self.file, ctx.stat_cache)
        return None if fp is None else {"code": self.module, **fp.record()}


_MISSING = object()


def lookup(data: Any, dotted: str) -> Any:
    """Value at a dotted key path (`train.lr`), or _MISSING."""
    node = data
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class ParamsDep:
    """Keys of one params file (YAML or JSON), recorded by value; a key may name a whole subtree."""

    file: str
    keys: tuple[str, ...]
    where: tuple[Where, ...]  # one per key
    kind: ClassVar[str] = "params"

    @property
    def key(self) -> str:
        return self.file

    @property
    def edges(self) -> tuple[str, ...]:
        return (self.file,)

    def measure(self, ctx: Context) -> Record:
        data = ctx.params_file(self.file, self.where[0])
        values: Record = {}
        for key, (file, line, keypath) in zip(self.keys, self.where):
            value = lookup(data, key)
            if value is _MISSING:
                raise UserError(f"key '{key}' not found in {self.file}", file=file, line=line,
                                key=keypath)
            values[key] = value
        return values

    def changes(self, old: Record, new: Record, ctx: Context) -> dict[str, str]:
        return compare_values(old, new)


Scalar = int | float | str | bool | None


def flatten(data: Any) -> dict[str, Scalar]:
    """Scalar leaves of nested mappings as {dotted.name: value}; lists are left out."""
    if not isinstance(data, dict):
        return {}
    return {k: v for key, value in data.items() for k, v in leaves(value, str(key)).items()
            if not isinstance(v, (list, dict))}


def read_metrics(path: Path) -> dict[str, Scalar]:
    """A metrics file's (JSON or YAML) scalar values, or {} if it is missing or not a mapping."""
    try:
        return flatten(load_data(path, path.name))
    except UserError:
        return {}


def compare_values(old: Record, new: Record) -> dict[str, str]:
    """Per key: new (not in the lock), removed (no longer declared), modified; subtrees per leaf."""
    out: dict[str, str] = {}
    for key in sorted(old.keys() | new.keys(), key=str):
        if key not in new:
            out[key] = "removed"
        elif key not in old:
            out[key] = "new"
        elif old[key] != new[key]:
            if isinstance(old[key], dict) and isinstance(new[key], dict):
                a, b = leaves(old[key], key), leaves(new[key], key)
                for leaf in sorted(a.keys() | b.keys()):
                    if leaf not in b:
                        out[leaf] = "deleted"
                    elif leaf not in a:
                        out[leaf] = "new"
                    elif a[leaf] != b[leaf]:
                        out[leaf] = "modified"
            else:
                out[key] = "modified"
    return out
