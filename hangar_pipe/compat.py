"""Every workaround hangar 0.5.2 needs on a modern stack, in one place. Import hangar only via `import_hangar()`.

- numpy >= 1.24 removed `np.bool`, `np.math` and `np.typeDict`, which Hangar uses. Hangar
  looks `np.typeDict` up by type number and char code too, so `np.sctypeDict` alone is not
  enough: it is rebuilt with those keys.
- protobuf >= 4 rejects Hangar's generated code unless the pure-python implementation is used.
- Hangar prints to stdout on init/checkout; `quiet()` silences that around calls.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any


def _lacks(np: Any, name: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            getattr(np, name)
            return False
        except AttributeError:
            return True


def patch_numpy() -> None:
    """Restore the numpy aliases Hangar uses; each is a no-op where the alias still exists."""
    import numpy as np

    if _lacks(np, "bool"):
        np.bool = np.bool_  # type: ignore[attr-defined]
    if _lacks(np, "math"):
        np.math = math  # type: ignore[attr-defined]
    if _lacks(np, "typeDict"):
        table: dict[Any, type] = dict(np.sctypeDict)
        for code in np.typecodes["All"]:
            try:
                dtype = np.dtype(code)
            except TypeError:
                continue
            table.setdefault(code, dtype.type)
            table.setdefault(dtype.num, dtype.type)
        np.typeDict = table  # type: ignore[attr-defined]


def patch_protobuf() -> None:
    """Use protobuf's pure-python implementation when protobuf >= 4 is installed (before first import)."""
    try:
        from importlib.metadata import version

        major = int(version("protobuf").split(".")[0])
    except Exception:  # noqa: BLE001 - not installed or odd version: leave it alone
        return
    if major >= 4:
        os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


def import_hangar() -> ModuleType:
    """Import hangar with the workarounds applied. Slow (it imports torch): call it only where needed."""
    patch_protobuf()
    patch_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import hangar
    return hangar


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what Hangar prints to stdout (init, checkout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
