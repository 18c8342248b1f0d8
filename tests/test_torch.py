"""hangar_pipe.torch: bulk reads equal Hangar's per-sample reads; order, shuffling, workers, commits."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hangar_repo import Repo, images

from hangar_pipe.errors import UserError
from hangar_pipe.hangar import compat
from hangar_pipe.hangar.store import HangarStore
from hangar_pipe.torch import BatchLoader, ColumnsDataset, read_column

N = 150


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """One commit with the same images on backends 00, 01 and 10, int and str keys, then a change."""
    path = tmp_path_factory.mktemp("torchrepo")
    data = Repo(path)
    rng = np.random.default_rng(0)
    arrays = {i: rng.random((8, 6), dtype=np.float32) for i in range(N)}

    def fill(co):
        for backend in ("00", "01", "10"):
            col = co.add_ndarray_column(f"x{backend}", shape=(8, 6), dtype=np.float32, backend=backend)
            with col:
                for key, value in arrays.items():
                    col[key] = value
        labels = co.add_ndarray_column("y", shape=(1,), dtype=np.int64)
        named = co.add_ndarray_column("named", shape=(3,), dtype=np.int32)
        with labels, named:
            for key in arrays:
                labels[key] = np.array([key % 10], dtype=np.int64)
            for key in ("b", "a", "c"):
                named[key] = np.full(3, ord(key), dtype=np.int32)

    first = data.edit("all backends", fill)
    second = data.write("change one", y={7: np.array([99], dtype=np.int64)})
    return path, first, second


def hangar_reads(path, commit, column):
    """What Hangar's own per-sample reads return, in our key order."""
    hangar = compat.import_hangar()
    with compat.quiet():
        co = hangar.Repository(str(path), exists=True).checkout(commit=commit)
    try:
        col = co.columns[column]
        keys = sorted(col.keys(), key=lambda k: (isinstance(k, str), k))
        return keys, np.stack([col[k] for k in keys])
    finally:
        co.close()


@pytest.mark.parametrize("column", ["x00", "x01", "x10", "y", "named"])
def test_bulk_read_equals_hangar_per_sample_reads(repo, column) -> None:
    path, first, _ = repo
    keys, expected = hangar_reads(path, first, column)
    got = read_column(HangarStore(path), first, column)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    ds = ColumnsDataset([column], repo=path, commit=first, cache_dir=False)
    assert ds.keys == keys


def test_order_is_sorted_keys_and_shuffle_is_seeded(repo) -> None:
    path, first, _ = repo
    ds = ColumnsDataset(["x00", "y"], repo=path, commit=first, cache_dir=False)
    assert ds.keys == list(range(N))
    assert [int(ds[i][1]) for i in range(12)] == [i % 10 for i in range(12)]
    a = [b[1].reshape(-1).tolist() for b in BatchLoader(ds, 16, shuffle=True, seed=3)]
    b = [b[1].reshape(-1).tolist() for b in BatchLoader(ds, 16, shuffle=True, seed=3)]
    assert a == b
    loader = BatchLoader(ds, 16, shuffle=True, seed=3)
    epoch1, epoch2 = list(loader), list(loader)
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(epoch1, epoch2)), "epochs differ"
    assert sorted(sum(a, [])) == sorted(ds.tensors[1].reshape(-1).tolist())
    assert len(loader) == 10 and [len(x[0]) for x in epoch1][-1] == N - 9 * 16
    plain = list(BatchLoader(ds, 64))
    assert torch.equal(torch.cat([x[0] for x in plain]), ds.tensors[0])


def test_reads_exactly_the_commit_asked_for(repo, monkeypatch) -> None:
    path, first, second = repo
    old = ColumnsDataset(["y"], repo=path, commit=first, cache_dir=False)
    new = ColumnsDataset(["y"], repo=path, commit=second, cache_dir=False)
    assert int(old[7][0]) == 7 and int(new[7][0]) == 99
    monkeypatch.setenv("HPIPE_DATA_REPO", str(path))
    monkeypatch.setenv("HPIPE_DATA_COMMIT", first)
    pinned = ColumnsDataset(["y"], cache_dir=False)
    assert pinned.commit == first and int(pinned[7][0]) == 7
    monkeypatch.delenv("HPIPE_DATA_COMMIT")
    with pytest.raises(UserError, match="no data commit"):
        ColumnsDataset(["y"], repo=path)
    with pytest.raises(UserError, match="not in"):
        ColumnsDataset(["y"], repo=path, commit="a=" + "0" * 40)
    with pytest.raises(UserError, match="different sample keys"):
        ColumnsDataset(["y", "named"], repo=path, commit=first)


def test_cache_is_keyed_by_fingerprint(repo, tmp_path) -> None:
    path, first, second = repo
    ColumnsDataset(["x00", "y"], repo=path, commit=first, cache_dir=tmp_path)
    ColumnsDataset(["y"], repo=path, commit=second, cache_dir=tmp_path)
    store = HangarStore(path)
    expected = {f"{store.column(c, n).fingerprint}.npy" for c, n in
                ((first, "x00"), (first, "y"), (second, "y"))}
    assert {p.name for p in tmp_path.iterdir()} == expected
    again = ColumnsDataset(["y"], repo=path, commit=second, cache_dir=tmp_path)
    assert int(again[7][0]) == 99


def test_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch) -> None:
    """A budget for two entries of column x: loading four versions keeps the cache within it."""
    (tmp_path / "data").mkdir()
    data = Repo(tmp_path / "data")
    versions = [data.write(f"v{i}", x=images(50, seed=i)) for i in range(4)]
    store = HangarStore(tmp_path / "data")
    fp = [store.column(c, "x").fingerprint for c in versions]
    cache = tmp_path / "columns"
    entry_size = 50 * 16 * 4 + 128  # float32 rows and the .npy header
    monkeypatch.setenv("HPIPE_COLUMNS_CACHE_MB", str(2.5 * entry_size / 1e6))

    def load(i: int) -> set[str]:
        time.sleep(0.02)  # past the filesystem's timestamp granularity: uses are ordered
        ds = ColumnsDataset(["x"], repo=tmp_path / "data", commit=versions[i], cache_dir=cache)
        np.testing.assert_array_equal(ds.arrays[0], np.stack(list(images(50, seed=i).values())))
        files = list(cache.iterdir())
        assert sum(f.stat().st_size for f in files) <= 2.5 * entry_size
        assert f"{fp[i]}.npy" in {f.name for f in files}, "the entry just used stays"
        return {f.name[:-4] for f in files}

    assert load(0) == {fp[0]}
    assert load(1) == {fp[0], fp[1]}
    assert load(2) == {fp[1], fp[2]}
    assert load(1) == {fp[1], fp[2]}  # a read: v1 is now the most recently used
    assert load(3) == {fp[1], fp[3]}
    monkeypatch.setenv("HPIPE_COLUMNS_CACHE_MB", "0")  # off: entries are still read, none written
    assert load(3) == {fp[1], fp[3]}
    ColumnsDataset(["x"], repo=tmp_path / "data", commit=versions[0], cache_dir=cache)
    assert {f.name[:-4] for f in cache.iterdir()} == {fp[1], fp[3]}


def test_a_damaged_or_half_written_entry_is_never_used(repo, tmp_path) -> None:
    path, first, _ = repo
    expected = ColumnsDataset(["x00"], repo=path, commit=first, cache_dir=False).arrays[0]
    entry = tmp_path / f"{HangarStore(path).column(first, 'x00').fingerprint}.npy"
    (tmp_path / f".{entry.name}.k1ll3d.tmp").write_bytes(b"\x93NUMPY half")  # a killed write's
    ColumnsDataset(["x00"], repo=path, commit=first, cache_dir=tmp_path)
    assert entry.exists()
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # damaged behind our back
    again = ColumnsDataset(["x00"], repo=path, commit=first, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.arrays[0], expected)
    np.testing.assert_array_equal(np.load(entry), expected)  # written again, whole


def _worker_sum(ds, context: str) -> list[int]:
    loader = torch.utils.data.DataLoader(ds, batch_size=10, num_workers=2,
                                         multiprocessing_context=context)
    return [int(y.sum()) for _, y in loader]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_works_with_dataloader_workers(repo, tmp_path, context) -> None:
    path, first, _ = repo
    ds = ColumnsDataset(["x10", "y"], repo=path, commit=first, cache_dir=tmp_path)
    expected = [int(y.sum()) for _, y in torch.utils.data.DataLoader(ds, batch_size=10)]
    assert _worker_sum(ds, context) == expected


def test_corrupted_data_is_detected(tmp_path) -> None:
    data = Repo(tmp_path)

    def fill(co):
        col = co.add_ndarray_column("x", shape=(4,), dtype=np.float32, backend="10")
        with col:
            for i in range(5):
                col[i] = np.full(4, i, dtype=np.float32)

    commit = data.edit("x", fill)
    npy = next((tmp_path / ".hangar" / "data" / "10").glob("*.npy"))
    arr = np.load(npy, mmap_mode="r+")
    arr[2, 0] = 42.0  # flip a stored value behind Hangar's back
    arr.flush()
    del arr
    with pytest.raises(UserError, match="DATA CORRUPTION in column 'x' sample #2"):
        read_column(HangarStore(tmp_path), commit, "x")
    assert read_column(HangarStore(tmp_path), commit, "x", verify=False)[2, 0] == 42.0
