"""Dependency and output kinds: the interface every kind implements, and the registry of kinds by tag.

A kind is a small frozen dataclass declared in a stage's `deps:` or `outs:`. `measure` turns
what it stands for into a *record*, the plain mapping stored in pipeline.lock; the record's
*tag* field names its kind (`{path: data/x, hash: …}`, `{hangar: ., columns: …}`). The engine
(decisions, run cache, lock, runner) works through the members of `Kind` only: nothing outside a
kind's module looks at its class or at the fields of its records.

A new kind is one module, a subclass of `Kind` with a `tag` and a `parse` classmethod, plus one
registration line in `hangar_pipe.plugins`: `kinds.register("env", "mypkg.envdep:EnvDep")`.
Then `- env: SEED` in pipeline.yaml declares one.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

    from hangar_pipe.core.context import Workspace
    from hangar_pipe.core.spec import SpecContext
    from hangar_pipe.core.yamlfile import KeyPath

Record = dict[str, Any]
Change = str | dict[str, Any]  # "new", "modified", …, or per-item detail


@dataclass(frozen=True)
class DataTarget:
    """A data repository a stage writes to: its folder (relative to the root) and branch (None: default)."""

    repo: str
    ref: str | None

    @property
    def edge(self) -> str:
        """What `produced` answers True for when a stage writes this branch by name (`ref:` set):
        a reader of that branch may find it missing until the writer runs."""
        return f"data-branch:{self.repo}@{self.ref}"


class Kind(ABC):
    """What the engine asks of a dependency or output. Subclasses are frozen dataclasses that
    define `tag`, `key` and `measure`; every other member has a default."""

    tag: ClassVar[str]  # the record field naming the kind, and the `- TAG: …` key in pipeline.yaml
    role: str = "out"  # outputs: out | metric | plot

    @property
    @abstractmethod
    def key(self) -> str:
        """Unique within a stage; `key_of` its record gives the same string."""

    @classmethod
    def key_of(cls, rec: Record) -> str:
        return f"{cls.tag}:{rec[cls.tag]}"

    @classmethod
    def parse(cls, ctx: SpecContext, value: Any, keypath: KeyPath, is_out: bool) -> Kind:
        """Build one from `- TAG: value` in pipeline.yaml; errors through `ctx.error`."""
        raise ctx.error(keypath, f"'{cls.tag}' cannot be declared in pipeline.yaml")

    @property
    def edges(self) -> tuple[str, ...]:
        """What links a producer's output to a consumer's dep in the graph."""
        return ()

    @property
    def path_edges(self) -> tuple[str, ...]:
        """Edges that are project paths: a folder holding one, or a path inside one, links too."""
        return ()

    @abstractmethod
    def measure(self, ws: Workspace) -> Record | None:
        """The record as things are now, or None when the thing is missing."""

    def identity(self, rec: Record) -> Any:
        """What of a record determines a stage's result, for the run key (default: all of it)."""
        return rec

    def changes(self, old: Record, new: Record, ws: Workspace) -> Change | None:
        """How two records of this item differ, as plain data; None when they do not."""
        return None if self.identity(old) == self.identity(new) else "modified"

    def drift(self, old: Record, new: Record, ws: Workspace) -> Change | None:
        """An output changed by others where that is no reason to rerun its stage (a commit by
        someone else to a writer's columns): what changed, for status to mention. Default: none."""
        return None

    def describe(self, change: Change) -> str:
        """A change in words, for status lines."""
        return describe_change(self.key, change)

    def brief(self, change: Change) -> str:
        """The change in a few words, where the whole does not fit a line (default: the key)."""
        return self.key

    def missing(self, ws: Workspace, produced: Callable[[str], bool]) -> str | None:
        """Before a run: why this dep cannot be read, or this output cannot be written (None: fine).
        `produced(edge)`: whether a stage writes that edge (so it may be missing until it runs)."""
        return None

    @property
    def cached(self) -> bool:
        """An output kept in the object cache (and so restorable from the run cache)."""
        return False

    @property
    def persists(self) -> bool:
        """An output kept from one run of its stage to the next (so the run is not a pure function
        of its inputs, and never restored from the run cache)."""
        return False

    def clean(self, ws: Workspace) -> None:
        """Before its stage runs: remove the output, unless it persists (default: nothing to do)."""
        return None

    @property
    def writes(self) -> DataTarget | None:
        """The data repository an output commits to, if it is one."""
        return None

    def file(self, ws: Workspace) -> Path | None:
        """The workspace file or folder this item is, if it is one (metrics and plots are read there)."""
        return None

    def ignored(self, ws: Workspace) -> list[Path]:
        """What of this item git should not track, once its stage is recorded (default: nothing;
        cached outputs and in-project Hangar repositories say so)."""
        return []

    def lock_record(self, rec: Record, ws: Workspace) -> Record:
        """An output's record as it goes into the lock after its stage ran (metrics add values)."""
        return rec

    @classmethod
    def recorded_metrics(cls, rec: Record) -> dict[str, Any] | None:
        """The metric values `lock_record` put in a record, if it is a metrics output's."""
        return None


def describe_change(key: str, change: Change) -> str:
    if isinstance(change, dict):
        return f"{key}: " + ", ".join(describe_change(k, v) for k, v in change.items())
    return f"{key} ({change})"


# -- the registry -------------------------------------------------------------------------------

_KINDS: dict[str, type[Kind] | str] = {}  # tag -> class, or "module:Class" until first use
_DECLARED: set[str] = set()  # tags written as `- TAG: …` in pipeline.yaml


def register(tag: str, kind: type[Kind] | str, *, declared: bool = True) -> None:
    """Make a kind known by its tag. `declared=False`: its records exist, but pipeline.yaml has no
    `- TAG:` form for it (paths are plain strings, code deps come from `uses:`)."""
    _KINDS[tag] = kind
    (_DECLARED.add if declared else _DECLARED.discard)(tag)


def unregister(tag: str) -> None:
    _KINDS.pop(tag, None)
    _DECLARED.discard(tag)


def declared_tags() -> list[str]:
    return sorted(_DECLARED)


def kind_class(tag: str) -> type[Kind]:
    entry = _KINDS[tag]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = _KINDS[tag] = getattr(importlib.import_module(module), name)
    return entry


def declared_kind(tag: str) -> type[Kind] | None:
    return kind_class(tag) if tag in _DECLARED else None


def tag_of(rec: Any) -> str | None:
    """The registered tag a lock record carries, with a string value; None if it has none."""
    if not isinstance(rec, dict):
        return None
    return next((f for f, v in rec.items() if f in _KINDS and isinstance(v, str)), None)


def record_kind(rec: Record) -> type[Kind]:
    """The kind a lock record belongs to."""
    tag = tag_of(rec)
    if tag is None:
        raise ValueError(f"not a record of a known kind: {rec!r}")
    return kind_class(tag)


def record_key(rec: Record) -> str:
    """The key of the item a lock record belongs to."""
    return record_kind(rec).key_of(rec)


def recorded_metrics(rec: Record) -> dict[str, Any] | None:
    return record_kind(rec).recorded_metrics(rec)


# the core's own kinds; the others are registered in hangar_pipe.plugins
register("path", "hangar_pipe.core.files:PathDep", declared=False)
register("code", "hangar_pipe.core.files:CodeDep", declared=False)
