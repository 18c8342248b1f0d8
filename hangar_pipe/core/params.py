"""Params (values read from YAML or JSON files, recorded by value) and metrics files' values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar_pipe.core.yamlfile import load_data
from hangar_pipe.errors import UserError

if TYPE_CHECKING:
    from hangar_pipe.core.context import Workspace

Where = tuple[str, "int | None", str]  # (file, line, key path) of a declaration, for errors
Scalar = int | float | str | bool | None

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
    """Keys of one params file, recorded by value; a key may name a whole subtree."""

    file: str
    keys: tuple[str, ...]
    where: tuple[Where, ...]  # one per key

    @property
    def key(self) -> str:
        return self.file

    @property
    def edges(self) -> tuple[str, ...]:
        return (self.file,)

    @property
    def path_edges(self) -> tuple[str, ...]:
        return ()

    def measure(self, ws: Workspace) -> dict[str, Any]:
        data = ws.params_file(self.file, self.where[0])
        values: dict[str, Any] = {}
        for key, (file, line, keypath) in zip(self.keys, self.where):
            value = lookup(data, key)
            if value is _MISSING:
                raise UserError(f"key '{key}' not found in {self.file}", file=file, line=line,
                                key=keypath)
            values[key] = value
        return values


def flatten(data: Any) -> dict[str, Scalar]:
    """Scalar leaves of nested mappings as {dotted.name: value}; lists are left out."""
    if not isinstance(data, dict):
        return {}
    return {k: v for key, value in data.items() for k, v in leaves(value, str(key)).items()
            if not isinstance(v, (list, dict))}


def read_metrics(path: Path) -> dict[str, Scalar]:
    """A metrics file's (JSON or YAML) scalar values: a mapping flattened, a bare number as
    `{"value": n}`; {} if it is missing or neither."""
    try:
        data = load_data(path, path.name)
    except UserError:
        return {}
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return {"value": data}
    return flatten(data)


def compare_values(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    """Per key: new (not in the lock), removed (no longer declared), modified; subtrees per leaf."""
    out: dict[str, str] = {}
    for key in sorted(old.keys() | new.keys(), key=str):
        if key not in new:
            out[key] = "removed"
        elif key not in old:
            out[key] = "new"
        elif old[key] != new[key]:
            if isinstance(old[key], dict) and isinstance(new[key], dict):
                out.update(_compare_leaves(leaves(old[key], key), leaves(new[key], key)))
            else:
                out[key] = "modified"
    return out


def _compare_leaves(a: dict[str, Any], b: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for leaf in sorted(a.keys() | b.keys()):
        if (a.get(leaf) == {} and leaf not in b) or (b.get(leaf) == {} and leaf not in a):
            continue  # an empty mapping that gained (or lost) keys: its keys say it all
        if leaf not in b:
            out[leaf] = "deleted"
        elif leaf not in a:
            out[leaf] = "new"
        elif a[leaf] != b[leaf]:
            out[leaf] = "modified"
    return out
