"""A test-only dependency kind: an environment variable's value (`- env: SEED`).

It shows what a new kind needs: this module and one `kinds.register` line, nothing else. Its
record has no `hash` field: `{env: SEED, value: "3"}`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.kinds import Kind, Record
from hangar_pipe.core.spec import SpecContext
from hangar_pipe.core.yamlfile import KeyPath


@dataclass(frozen=True)
class EnvDep(Kind):
    name: str
    tag: ClassVar[str] = "env"

    @property
    def key(self) -> str:
        return f"env:{self.name}"

    @classmethod
    def parse(cls, ctx: SpecContext, value: Any, keypath: KeyPath, is_out: bool) -> Kind:
        if is_out:
            raise ctx.error(keypath, "an environment variable is not an output")
        if not isinstance(value, str) or not value.isidentifier():
            raise ctx.error(keypath, "expected a variable name")
        return cls(value)

    def measure(self, ws: Workspace) -> Record | None:
        value = os.environ.get(self.name)
        return None if value is None else {"env": self.name, "value": value}

    def missing(self, ws: Workspace, produced: Callable[[str], bool]) -> str | None:
        return None if self.name in os.environ else f"environment variable {self.name} is not set"
