"""hangar 0.5.2 on today's numpy/protobuf through hangar_pipe.hangar.compat: import, write, commit, read back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hangar_pipe.hangar import compat


def test_typedict_has_type_numbers_and_char_codes() -> None:
    compat.patch_numpy()
    assert np.typeDict[np.dtype(np.float32).num] is np.float32
    assert np.typeDict["f"] is np.float32
    assert np.typeDict["uint8"] is np.uint8
    assert np.bool is np.bool_ or np.bool is bool
    assert np.math.ceil(1.2) == 2


@pytest.mark.parametrize("backend", ["00", "01", "10"])
def test_round_trip_on_every_backend(tmp_path, backend: str) -> None:
    hangar = compat.import_hangar()
    with compat.quiet():
        repo = hangar.Repository(tmp_path, exists=False)
        repo.init(user_name="t", user_email="t@example.com", remove_old=True)
        co = repo.checkout(write=True)
    rng = np.random.default_rng(0)
    arrays = {i: rng.random(784, dtype=np.float32) for i in range(20)}
    col = co.add_ndarray_column("imgs", shape=(784,), dtype=np.float32, backend=backend)
    labels = co.add_ndarray_column("labels", shape=(1,), dtype=np.int64)
    with col, labels:
        for i, arr in arrays.items():
            col[i] = arr
            labels[i] = np.array([i % 10], dtype=np.int64)
    digest = co.commit("first")
    co.close()
    with compat.quiet():
        reader = repo.checkout(commit=digest)
    assert reader.columns["imgs"].backend == backend
    for i, arr in arrays.items():
        np.testing.assert_array_equal(reader["imgs", i], arr)
        assert reader["labels", i][0] == i % 10
    reader.close()


def test_missing_aliases_reported_then_restored() -> None:
    compat.patch_numpy()
    assert compat.missing_numpy_aliases() == []


WRITE_784 = """
import sys, numpy as np
if sys.argv[1] == "plain":
    from hangar import Repository
    repo = Repository(".", exists=False)
    repo.init(user_name="u", user_email="u@example.com")
else:
    from hangar_pipe.data import repository
    repo = repository(".")
co = repo.checkout(write=True)
co.add_ndarray_column("x", prototype=np.zeros(784, dtype=np.float32))  # Hangar's HDF5 '00' backend
co.columns["x"][0] = np.arange(784, dtype=np.float32)
print(co.commit("from user code"))
co.close()
"""


@pytest.mark.parametrize("how", ["plain", "hpipe"])
def test_user_code_writes_through_hangar_pipe_data(tmp_path, how: str) -> None:
    """The one line users need to write to the project's Hangar repository from their own code."""
    proc = subprocess.run([sys.executable, "-c", WRITE_784, how], cwd=tmp_path, capture_output=True, text=True)
    if how == "plain":  # why the line is needed: Hangar 0.5.2 alone fails on today's numpy
        assert proc.returncode != 0 and "has no attribute 'math'" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("a=")


LAZY_TORCH = """
import sys
import numpy as np
from hangar_pipe.hangar import compat
hangar = compat.import_hangar()
assert "torch" not in sys.modules, "import_hangar imported torch"
with compat.quiet():
    repo = hangar.Repository(sys.argv[1], exists=False)
    repo.init(user_name="u", user_email="u@example.com")
    co = repo.checkout(write=True)
col = co.add_ndarray_column("x", prototype=np.zeros(3, dtype=np.float32))
with col:
    for i in range(4):
        col[i] = np.full(3, i, dtype=np.float32)
co.commit("x")
co.close()
assert "torch" not in sys.modules, "writing a commit imported torch"
with compat.quiet():
    reader = repo.checkout()
dataset = hangar.make_torch_dataset([reader.columns["x"]])
import torch.utils.data
assert isinstance(dataset, torch.utils.data.Dataset)
assert sorted(float(dataset[i][0][0]) for i in range(len(dataset))) == [0.0, 1.0, 2.0, 3.0]
reader.close()
from hangar.dataloaders.torchloader import TorchDataset  # the rest of the module, when asked for
assert isinstance(dataset, TorchDataset)
print("ok")
"""


def test_hangar_is_imported_without_torch_and_its_torch_loader_still_works(tmp_path) -> None:
    """A process that reads or writes Hangar data (ingest, `hpipe data`, push) does not pay
    `import torch`; Hangar's own make_torch_dataset imports it when called."""
    done = subprocess.run([sys.executable, "-c", LAZY_TORCH, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
