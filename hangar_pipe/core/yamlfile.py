"""YAML in and out: load with line numbers for error messages, dump deterministically.

Every read is guarded: bytes that are not UTF-8, a duplicate key, an alias that refers to its
own node and aliases that expand past `ALIAS_NODES` (an alias bomb) are one-line UserErrors
naming the file. The guards cost a substring test on files without anchors.

PyYAML is imported on the first parse. With `use_cache(folder)` (the pipeline does it for its
project) a file whose bytes were parsed before is not parsed again (core/parsed.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hangar_pipe.core.parsed import MISS, ParsedCache
from hangar_pipe.errors import UserError

_MERGE = "tag:yaml.org,2002:merge"
_cache: ParsedCache | None = None


def use_cache(root: Path | None, folder: Path | None = None) -> None:
    """Keep the parses of files under `root` in `folder` (None: parse every time)."""
    global _cache
    _cache = ParsedCache(root, folder) if root is not None and folder is not None else None


def _kept(path: Path, keep: bool) -> ParsedCache | None:
    return _cache if keep and _cache is not None and _cache.holds(path) else None


@cache
def _yaml() -> Any:
    """PyYAML, imported on first use (~15 ms), with its C loader and dumper where present."""
    import yaml

    return yaml


def _loader() -> Any:
    return getattr(_yaml(), "CSafeLoader", _yaml().SafeLoader)

ALIAS_NODES = 1_000_000  # an aliased document may expand to this many nodes, or 10x its own
ALIAS_RATIO = 10

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


def _children(node: Any) -> list[Any]:
    yaml = _yaml()
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_aliases(root: Any) -> None:
    """Refuse a node graph whose aliases expand it past the cap, or refer to their own node.

    Sizes are counted once per distinct node (memoized), so a bomb costs its own size to check.
    """
    sizes: dict[int, int] = {}  # id -> expanded node count; -1 while its subtree is walked
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            continue
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise UserError("a YAML alias refers to its own node (recursive data)",
                                line=node.start_mark.line + 1)
            continue
        sizes[id(node)] = -1
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))
    if sizes[id(root)] > max(ALIAS_NODES, ALIAS_RATIO * len(sizes)):
        raise UserError("too many YAML aliases (alias bomb?)")


def _mapping_keys(node: Any, path: KeyPath) -> list[tuple[Any, Any, Any]]:
    """(key, key node, value node) of a mapping node; a duplicate key is a UserError."""
    seen: set[Any] = set()
    found = []
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, _yaml().ScalarNode) else repr(key_node)
        if key == "<<":
            continue
        if key in seen:
            raise UserError(f"duplicate key '{key}'", line=key_node.start_mark.line + 1,
                            key=keypath_str(path) or None)
        seen.add(key)
        found.append((key, key_node, value_node))
    return found


def _record_lines(root: Any, lines: dict[KeyPath, int]) -> None:
    """The line of every key path, in document order; a node reached again through an alias
    is not walked again (its paths take the alias's line)."""
    yaml = _yaml()
    walked: set[int] = set()
    stack: list[tuple[Any, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            items = _mapping_keys(node, path)
            for key, key_node, _ in items:
                lines[path + (key,)] = key_node.start_mark.line + 1
            stack.extend((value, path + (key,)) for key, _, value in reversed(items))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
            stack.extend((item, path + (i,)) for i, item in reversed(list(enumerate(node.value))))


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse one YAML document; invalid YAML becomes a one-line UserError."""
    yaml = _yaml()
    try:
        node = yaml.compose(text, Loader=_loader())
        lines: dict[KeyPath, int] = {}
        if node is not None:
            if "&" in text:
                check_aliases(node)
            _record_lines(node, lines)
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


def decode(raw: bytes, file: str) -> str:
    """UTF-8 text, or a UserError naming the first bad byte's offset (and line)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                        file=file, line=line) from None


def _read(path: Path, file: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError("file not found", file=file) from None


def load_yaml(path: Path, display: str | None = None, keep: bool = True) -> YamlDoc:
    """A YAML file with the line of every key (for `file:line: key:` errors); `keep=False`: a
    file whose parse must not be kept (it holds secrets)."""
    file = display or str(path)
    raw = _read(path, file)
    cache = _kept(path, keep)
    if cache is not None and (kept := cache.get(str(path), "doc", raw)) is not MISS:
        return YamlDoc(file, *kept)
    doc = parse_yaml(decode(raw, file), file)
    if cache is not None:
        cache.put(str(path), "doc", raw, (doc.data, doc.lines))
    return doc


class _DuplicateKey(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _construct_unique(loader: Any, node: Any, deep: bool = False) -> Any:
    """SafeConstructor.construct_mapping that refuses a key given twice (merged keys aside)."""
    yaml = _yaml()
    explicit = [k for k, _ in node.value] if isinstance(node, yaml.MappingNode) else []
    merge = any(k.tag == _MERGE for k in explicit)
    mapping = _loader().construct_mapping(loader, node, deep=deep)
    if merge:
        names = [k.value for k in explicit if k.tag != _MERGE and isinstance(k, yaml.ScalarNode)]
        if len(set(names)) < len(names):
            raise _DuplicateKey(node.start_mark.line + 1)
    elif len(mapping) < len(explicit):
        raise _DuplicateKey(node.start_mark.line + 1)
    return mapping


@cache
def _unique_keys_loader() -> Any:
    return type("_UniqueKeysLoader", (_loader(),), {"construct_mapping": _construct_unique})


def load_data(path: Path, display: str | None = None, unique_keys: bool = True) -> Any:
    """Load YAML or JSON data fast, without line tracking (params, lock, metrics); a key given
    twice is an error unless `unique_keys` is False."""
    file = display or str(path)
    raw = _read(path, file)
    kind = "unique" if unique_keys else "data"
    cache = _kept(path, True)
    if cache is not None and (kept := cache.get(str(path), kind, raw)) is not MISS:
        return kept
    data = _parse_data(raw, file, unique_keys)
    if cache is not None:
        cache.put(str(path), kind, raw, data)
    return data


def _parse_data(raw: bytes, file: str, unique_keys: bool) -> Any:
    yaml = _yaml()
    loader = (_unique_keys_loader() if unique_keys else _loader())(raw)
    try:
        node = loader.get_single_node()
        if node is not None and b"&" in raw:
            check_aliases(node)
        return None if node is None else loader.construct_document(node)
    except UserError as exc:
        exc.file = file
        raise
    except (yaml.YAMLError, _DuplicateKey) as exc:
        doc = parse_yaml(decode(raw, file), file)  # re-parse only to build the error message
        if isinstance(exc, _DuplicateKey):
            raise UserError("duplicate key", file=file, line=exc.line) from None
        return doc.data
    finally:
        loader.dispose()


def dump(data: Any) -> str:
    """Deterministic, human-readable YAML (insertion order kept)."""
    yaml = _yaml()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=100))
