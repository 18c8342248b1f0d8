"""hangar 0.5.2 on today's numpy/protobuf through hangar_pipe.hangar.compat: import, write, commit, read back."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

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


# -- a writer checkout's lazy sample maps (compat.LazySamples) and its commit ref -----------------


def _writer_repo(tmp_path: Any) -> tuple[Any, Any]:
    """A repository with int-keyed samples on two backends ('10', then '00' after a backend
    change) and a str-keyed column, committed; (repository, hangar)."""
    hangar = compat.import_hangar()
    with compat.quiet():
        repo = hangar.Repository(tmp_path, exists=False)
        repo.init(user_name="t", user_email="t@example.com", remove_old=True)
        co = repo.checkout(write=True)
    imgs = co.add_ndarray_column("imgs", shape=(4,), dtype=np.float32, backend="10")
    names = co.add_ndarray_column("names", shape=(2,), dtype=np.int64)
    with imgs, names:
        for i in range(6):
            imgs[i] = np.full(4, i, np.float32)
            names[f"s{i}"] = np.array([i, -i], np.int64)
    imgs.change_backend("00")
    with imgs:
        for i in range(6, 9):
            imgs[i] = np.full(4, i, np.float32)
    co.commit("first")
    co.close()
    return repo, hangar


def _eager(co: Any, column: str) -> dict[Any, str]:
    """Hangar's own map of the column, read from the staging area now (locations as text: they
    do not compare by value)."""
    from hangar.columns.constructors import _flat_load_sample_keys_and_specs

    return _text(_flat_load_sample_keys_and_specs(column, co._columns._txnctx)[0])


def _text(samples: Any) -> dict[Any, str]:
    return {key: repr(spec) for key, spec in samples.items()}


def test_writer_sample_maps_are_read_when_needed_and_agree_with_hangars(tmp_path) -> None:
    repo, _ = _writer_repo(tmp_path)
    with compat.quiet():
        co = repo.checkout(write=True)
    try:
        imgs, names = co.columns["imgs"], co.columns["names"]
        assert isinstance(imgs._samples, compat.LazySamples) and imgs._samples._map is None
        assert set(imgs._be_fs) == {"00"}  # the schema's backend only, until a sample needs another
        eager = _eager(co, "imgs")
        for key in [0, 5, 8, 9, "0", "#0", True, np.int64(3), -1, 1.0, "bad key!"]:
            assert (key in imgs) == (key in eager), key  # a dict's answers, odd keys included
        assert imgs._samples._map is not None  # (an odd key read the whole map)
        np.testing.assert_array_equal(names["s3"], [3, -3])
        assert names._samples._map is None  # one lookup, not the whole column
        spec = names._samples["s3"]
        assert names._samples["s3"] is spec  # the same object each time, as in Hangar's map
        assert "s9" not in names and 3 not in names and names._samples._map is None
        with names:  # inside a write: its own uncommitted writes are seen
            names["s9"] = np.array([9, 9], np.int64)
            del names["s0"]
            assert "s9" in names and "s0" not in names and names._samples._map is None
            np.testing.assert_array_equal(names["s9"], [9, 9])
        assert _text(names._samples) == _eager(co, "names")
        assert names._samples["s3"] is spec  # (still, once the whole map is read)
        assert len(names) == 6 and sorted(names.keys()) == ["s1", "s2", "s3", "s4", "s5", "s9"]
        with names:
            names["s10"] = np.array([10, 10], np.int64)
        assert "s10" in names and _text(names._samples) == _eager(co, "names")
    finally:
        co.close()


def test_a_lazy_map_opens_the_backends_its_samples_live_in(tmp_path) -> None:
    """Samples written before a backend change live in the old backend's files: reading one
    opens them, as Hangar opens every backend a column's samples use when it builds the map."""
    repo, _ = _writer_repo(tmp_path)
    with compat.quiet():
        co = repo.checkout(write=True)
    try:
        imgs = co.columns["imgs"]
        np.testing.assert_array_equal(imgs[2], np.full(4, 2, np.float32))  # in '10'
        np.testing.assert_array_equal(imgs[7], np.full(4, 7, np.float32))  # in '00'
        assert set(imgs._be_fs) == {"00", "10"}
        assert {k: v.tolist() for k, v in imgs.items()} == {i: [float(i)] * 4 for i in range(9)}
        with imgs:
            imgs[2] = np.full(4, 20, np.float32)
        co.commit("changed one")
    finally:
        co.close()
    with compat.quiet():
        reader = repo.checkout()
    assert reader["imgs", 2].tolist() == [20.0] * 4 and reader["imgs", 7].tolist() == [7.0] * 4
    reader.close()


def test_the_commit_ref_is_hangars_records_and_digest(tmp_path) -> None:
    """compat.commit_ref: Hangar's digest (so the same commit hash) and the same records; Hangar
    reads the commit back, checking it against that digest."""
    import blosc

    repo, _ = _writer_repo(tmp_path)
    with compat.quiet():
        co = repo.checkout(write=True)
    try:
        with co.columns["names"] as names:
            names["new"] = np.array([1, 2], np.int64)
        ours, hangars = compat.commit_ref(co._stageenv), compat.ORIGINAL_COMMIT_REF[0](co._stageenv)
        assert ours.digest == hangars.digest
        assert blosc.decompress(ours.raw) == blosc.decompress(hangars.raw)
        commit = co.commit("second")
    finally:
        co.close()
    from hangar.records.commiting import get_commit_ref

    refs = get_commit_ref(repo._env.refenv, commit)  # IOError if the digest did not match
    assert any(b"new" in key for key, _ in refs)
    with compat.quiet():
        reader = repo.checkout(commit=commit)
    assert reader["names", "new"].tolist() == [1, 2]
    reader.close()
