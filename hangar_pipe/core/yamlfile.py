"""YAML in and out: load with line numbers for error messages, dump deterministically."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hangar_pipe.errors import UserError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

KeyPath = tuple[Any, ...]


def keypath_str(path: KeyPath) -> str:
    """('stages', 'train', 'deps', 1) -> 'stages.train.deps[1]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class YamlDoc:
    """Parsed YAML data plus the line of every key path, for `file:line: key:` errors."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: KeyPath, message: str, at: KeyPath | None = None) -> UserError:
        """An error about the value at `path`, reported at the line of `at` (default: path)."""
        return UserError(message, file=self.file, line=self.line(path if at is None else at),
                         key=keypath_str(path) or None)


def _record_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key == "<<":
                continue
            if key in seen:
                raise UserError(f"duplicate key '{key}'", line=key_node.start_mark.line + 1,
                                key=keypath_str(path) or None)
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _record_lines(item, path + (i,), lines)


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse one YAML document; invalid YAML becomes a one-line UserError."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        lines: dict[KeyPath, int] = {}
        if node is not None:
            _record_lines(node, (), lines)
        data = yaml.constructor.SafeConstructor().construct_document(node) if node else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise UserError(f"invalid YAML: {exc.problem or exc.context}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {exc}", file=file) from None
    except UserError as exc:
        exc.file = file
        raise
    return YamlDoc(file, data, lines)


def load_yaml(path: Path, display: str | None = None) -> YamlDoc:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", file=display or str(path)) from None
    return parse_yaml(text, display or str(path))


def load_data(path: Path, display: str | None = None) -> Any:
    """Load YAML or JSON data fast, without line tracking (params, metrics)."""
    try:
        with open(path, "rb") as fh:
            return yaml.load(fh, Loader=_Loader)
    except FileNotFoundError:
        raise UserError("file not found", file=display or str(path)) from None
    except yaml.YAMLError:
        return load_yaml(path, display).data  # re-parse only to build the error message


def dump(data: Any) -> str:
    """Deterministic, human-readable YAML (insertion order kept)."""
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=100))
