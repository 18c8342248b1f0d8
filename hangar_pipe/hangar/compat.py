"""Every workaround hangar 0.5.2 needs on a modern stack, in one place. Import hangar only via `import_hangar()`.

- numpy >= 1.24 removed `np.bool`, `np.math` and `np.typeDict`, which Hangar uses. Hangar
  looks `np.typeDict` up by type number and char code too, so `np.sctypeDict` alone is not
  enough: it is rebuilt with those keys.
- protobuf >= 4 rejects Hangar's generated code unless the pure-python implementation is used.
- Hangar prints to stdout on init/checkout; `quiet()` silences that around calls.
- `import blosc` imports numpy and blosc's unittest module (~0.25 s); reading Hangar's commit
  records on the no-op path needs only its C extension, which `blosc_decompress()` loads alone.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Callable, Iterator
from functools import cache
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


NUMPY_ALIASES = ("bool", "math", "typeDict")


def missing_numpy_aliases() -> list[str]:
    """The numpy aliases Hangar uses that this numpy lacks (none after `patch_numpy()`)."""
    import numpy as np

    return [name for name in NUMPY_ALIASES if _lacks(np, name)]


def patch_numpy() -> None:
    """Restore the numpy aliases Hangar uses; each is a no-op where the alias still exists."""
    import numpy as np

    if _lacks(np, "bool"):
        setattr(np, "bool", np.bool_)
    if _lacks(np, "math"):
        setattr(np, "math", math)
    if _lacks(np, "typeDict"):
        table: dict[Any, type] = dict(np.sctypeDict)
        for code in np.typecodes["All"]:
            try:
                dtype = np.dtype(code)
            except TypeError:
                continue
            table.setdefault(code, dtype.type)
            table.setdefault(dtype.num, dtype.type)
        setattr(np, "typeDict", table)


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
    module: ModuleType = hangar
    return module


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what Hangar prints to stdout (init, checkout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@cache
def blosc_decompress() -> Callable[[bytes], bytes]:
    """blosc's `decompress`, from its C extension alone (no numpy, no `blosc/__init__`)."""
    import importlib.machinery
    import importlib.util
    import sys

    if "blosc" in sys.modules:  # already paid for: use it
        return sys.modules["blosc"].decompress  # type: ignore[no-any-return]
    spec = importlib.util.find_spec("blosc")
    if spec is None or spec.origin is None:
        raise ImportError("blosc is not installed (it comes with hangar)")
    folder = os.path.dirname(spec.origin)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "blosc_extension" + suffix)
        if os.path.exists(path):
            break
    else:
        import blosc

        return blosc.decompress  # type: ignore[no-any-return]
    loader = importlib.machinery.ExtensionFileLoader("blosc.blosc_extension", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    ext = importlib.util.module_from_spec(spec)
    loader.exec_module(ext)
    ext.init()
    return lambda data: bytes(ext.decompress(data, False))
