"""Test-suite-only setup for Hangar 0.5.2's own tests, as run by benchmarks/hangar_suite.sh.

hangar_suite.sh copies this file to benchmarks/.work/hangar-suite/conftest.py, one level above
Hangar's unpacked tests/, so pytest loads it before Hangar's tests/conftest.py imports hangar.
Nothing here is needed by Hangar itself or by hangar_pipe; it only makes Hangar's suite runnable.

The compat shim is NOT applied here. A .pth file in the suite's venv runs
`hangar_pipe.hangar.compat.patch_protobuf()` and `patch_numpy()` at interpreter start-up (so it also
covers any subprocess). This file:

1. checks that the shim came from hangar_pipe.hangar.compat and ran before anything imported hangar,
   then applies `patch_imported_hangar()` (which needs hangar imported), as hangar_pipe does;
2. restores `np.int` (removed in numpy 1.24). TEST-SUITE ONLY: Hangar's tests use `np.int`,
   Hangar's own code does not, so it stays out of the shim;
3. when TensorFlow is not installed: tests/ml_dataloaders/test_dataloaders.py holds the torch
   AND the TensorFlow dataloader tests, and imports tensorflow at module level, so without
   TensorFlow the whole file fails to collect (and pytest stops the run with a collection error).
   Rather than `--ignore` the file and lose the torch dataloader tests too, a stand-in
   `tensorflow` module is put in sys.modules while that one file is imported (it only answers
   the module-level `tf.compat.v1.enable_eager_execution()`), and the `TestTfDataLoader` tests
   are deselected, so they show up as "deselected" in pytest's summary line.
   Pass `--ignore=tests/ml_dataloaders/test_dataloaders.py` to hangar_suite.sh to drop the file.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings

import pytest

# --- 1. the shim must have come from hangar_pipe.hangar.compat, via the venv's .pth ----------------------
if "hangar_pipe.hangar.compat" not in sys.modules:
    raise pytest.UsageError(
        "hangar_pipe.hangar.compat was not imported at start-up: the venv's zz_hangar_suite_shim.pth "
        "is missing or failed (see the 'Error processing line' message above, if any)"
    )
if "hangar" in sys.modules:
    raise pytest.UsageError(
        "hangar was imported before the suite's conftest: something imported it at start-up "
        "(does hangar_pipe/__init__.py import hangar now?), so the shim may have come too late"
    )

import numpy as np  # noqa: E402

from hangar_pipe.hangar.compat import missing_numpy_aliases  # noqa: E402

_missing = missing_numpy_aliases()
if _missing:
    raise pytest.UsageError(f"the hangar_pipe.hangar.compat shim did not restore numpy.{', numpy.'.join(_missing)}")

# --- 1b. the patches of Hangar's code that hangar_pipe applies once hangar is imported (its writer's
# status and commit ref, its writer's lazy sample maps): Hangar's own tests run against them too --
from hangar_pipe.hangar.compat import patch_imported_hangar  # noqa: E402

patch_imported_hangar()

# --- 2. np.int: TEST-SUITE ONLY (Hangar's tests use it; Hangar's code does not) ------------------
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _has_int = hasattr(np, "int")
if not _has_int:
    np.int = int  # type: ignore[attr-defined]

# --- 3. TensorFlow dataloader tests when TensorFlow is absent ------------------------------------
TF_ABSENT = importlib.util.find_spec("tensorflow") is None
_DATALOADER_FILE = "test_dataloaders.py"
_TF_CLASS = "TestTfDataLoader"


class _TensorFlowStandIn(types.ModuleType):
    """Answers only what test_dataloaders.py runs at import time; anything else raises."""

    def __init__(self) -> None:
        super().__init__("tensorflow", "stand-in: TensorFlow is not installed (hangar_suite_conftest.py)")
        v1 = types.SimpleNamespace(enable_eager_execution=lambda: None)
        self.compat = types.SimpleNamespace(v1=v1)

    def __getattr__(self, name: str):  # only called for names not set above
        raise AttributeError(f"tensorflow is not installed; the TF dataloader tests are deselected ({name})")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    stand_in = (
        TF_ABSENT
        and isinstance(collector, pytest.Module)
        and collector.path.name == _DATALOADER_FILE
        and "tensorflow" not in sys.modules
    )
    if stand_in:
        sys.modules["tensorflow"] = _TensorFlowStandIn()
    try:
        yield
    finally:
        if stand_in and isinstance(sys.modules.get("tensorflow"), _TensorFlowStandIn):
            del sys.modules["tensorflow"]


def pytest_collection_modifyitems(config, items):
    if not TF_ABSENT:
        return
    keep, drop = [], []
    for item in items:
        in_tf_class = item.path.name == _DATALOADER_FILE and f"::{_TF_CLASS}::" in item.nodeid
        (drop if in_tf_class else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    import hangar_pipe.hangar.compat as compat

    tf = "absent: TestTfDataLoader deselected" if TF_ABSENT else "installed"
    return [
        f"hangar-suite: shim from {compat.__file__} (numpy {np.__version__}); np.int restored for the tests",
        f"hangar-suite: tensorflow {tf}",
    ]
