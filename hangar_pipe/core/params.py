"""Params (values read from YAML, JSON or TOML files, recorded by value) and metrics files' values.

A stage tracks some keys of a params file (`- params.yaml: [train.lr]`, a key naming a subtree
tracks the subtree) or the whole file (`- params.yaml:`). Either way the lock holds values by
key: the dotted keys declared, or the file's top-level keys with their whole values (as DVC's
dvc.lock does). The format goes by the file's suffix; JSON and TOML are parsed only when a
stage declares such a file.
"""

from __future__ import annotations

import sys
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
FORMATS = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".toml": "TOML"}  # suffix -> format


def params_format(file: str) -> str | None:
    """The format of a params file by its suffix (YAML, JSON, TOML), or None if unsupported."""
    return FORMATS.get(Path(file).suffix.lower())


def load_params(path: Path, rel: str) -> Any:
    """A params file's data, parsed as its suffix says; bad content is a UserError naming the
    file (and the line, where the parser gives one)."""
    fmt = params_format(rel)
    if fmt is None:
        raise UserError(f"unsupported params file type (use {', '.join(FORMATS)})", file=rel)
    try:
        if fmt == "YAML":
            return load_data(path, rel)
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read params file: {exc.strerror or exc}", file=rel) from None
    return _load_json(raw, rel) if fmt == "JSON" else _load_toml(raw, rel)


def _load_json(raw: bytes, rel: str) -> Any:
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=rel,
                        line=exc.lineno) from None
    except ValueError:  # bytes in no Unicode encoding
        raise UserError("invalid JSON: not UTF-8 text", file=rel) from None


_TOML_AT = r" \(at (?:line (\d+), column (\d+)|end of document)\)$"  # where tomllib says it failed


def _load_toml(raw: bytes, rel: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("invalid TOML: not UTF-8 text", file=rel) from None
    try:
        return _plain(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        import re

        at = re.search(_TOML_AT, message)
        line, column = (at.group(1), at.group(2)) if at else (None, None)
        if at and line is None:  # at end of document
            line = str(text.count("\n") + 1)
        raise UserError(f"invalid TOML: {re.sub(_TOML_AT, '', message)}"
                        + (f" (column {column})" if column else ""), file=rel,
                        line=int(line) if line else None) from None


def _plain(value: Any) -> Any:
    """TOML data with its dates and times as ISO 8601 strings (the lock, run cache and history
    keep plain data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    import datetime

    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value


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
    """Keys of one params file, recorded by value; a key may name a whole subtree. No keys:
    the whole file, recorded by its top-level keys."""

    file: str
    keys: tuple[str, ...]
    where: tuple[Where, ...]  # one per key; the whole file: one, its declaration

    @property
    def whole(self) -> bool:
        return not self.keys

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
        if self.whole:
            return self._top_level(data)
        values: dict[str, Any] = {}
        for key, (file, line, keypath) in zip(self.keys, self.where):
            value = lookup(data, key)
            if value is _MISSING:
                raise UserError(f"key '{key}' not found in {self.file}", file=file, line=line,
                                key=keypath)
            values[key] = value
        return values

    def _top_level(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            file, line, keypath = self.where[0]
            raise UserError(f"{self.file} holds {type(data).__name__}, not a mapping of params",
                            file=file, line=line, key=keypath)
        return {str(k): v for k, v in data.items()}

    def compare(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
        """How the recorded values differ from the measured ones, per key (`compare_values`);
        the whole file per leaf, so a key added to or deleted from the file is named."""
        if not self.whole:
            return compare_values(old, new)
        return _compare_leaves(flat_leaves(old), flat_leaves(new))


def flat_leaves(values: dict[str, Any]) -> dict[str, Any]:
    """{top-level key: value} as {dotted.leaf: value}; lists and empty mappings are leaves."""
    return {k: v for key, value in values.items() for k, v in leaves(value, str(key)).items()}


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
        data = load_data(path, path.name, unique_keys=False)
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
