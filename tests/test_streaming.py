"""hangar_pipe.torch beyond whole columns in memory, on real Hangar repositories.

Streaming: columns larger than the memory budget read a window of chunks at a time, with the
same bytes as the in-memory path (unshuffled: the same batches; shuffled: the same order as the
in-memory loader given the same ChunkShuffle), every sample checked, never more than three
windows held. Selections: Hangar's keys, index_range and field_names. Variable-shape columns:
one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Project
from hangar_repo import Repo
from test_training import tiny_data

from hangar_pipe.errors import UserError
from hangar_pipe.hangar import compat
from hangar_pipe.torch import BatchLoader, ColumnsDataset
from hangar_pipe.training.streaming import HELD

N = 300
ROW = 8 * 6 * 4 + 8  # bytes of one sample: an (8, 6) float32 image and an int64 label
BUDGET = N * ROW // 3  # the columns are three times the budget


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Images on backends 00, 01 and 10 and labels; then a commit that rewrites 20 scattered
    samples (so that a column's samples sit in two files, with gaps)."""
    path = tmp_path_factory.mktemp("streamrepo")
    data = Repo(path)
    rng = np.random.default_rng(0)
    arrays = {i: rng.random((8, 6), dtype=np.float32) for i in range(N)}

    def fill(co):  # type: ignore[no-untyped-def]
        for backend in ("00", "01", "10"):
            col = co.add_ndarray_column(f"x{backend}", shape=(8, 6), dtype=np.float32, backend=backend)
            with col:
                for key, value in arrays.items():
                    col[key] = value
        labels = co.add_ndarray_column("y", shape=(1,), dtype=np.int64)
        with labels:
            for key in arrays:
                labels[key] = np.array([key], dtype=np.int64)
        ragged = co.add_ndarray_column("ragged", shape=(5,), dtype=np.float32, variable_shape=True)
        with ragged:
            ragged[0], ragged[1] = np.ones(3, np.float32), np.ones(5, np.float32)

    first = data.edit("columns", fill)
    changed = {i: np.full((8, 6), -i, dtype=np.float32) for i in range(5, N, 15)}
    second = data.write("rewrite some", x00=changed, x01=changed, x10=changed)
    return path, first, second


def batches(loader: BatchLoader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in loader]


def same(a: list[tuple[torch.Tensor, ...]], b: list[tuple[torch.Tensor, ...]]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))


@pytest.mark.parametrize("backend", ["00", "01", "10"])
@pytest.mark.parametrize("at", [0, 1], ids=["one-file", "rewritten"])
def test_a_streamed_column_gives_the_in_memory_bytes(repo, backend: str, at: int) -> None:
    path, *commits = repo
    columns = [f"x{backend}", "y"]
    memory = ColumnsDataset(columns, repo=path, commit=commits[at], cache_dir=False)
    streamed = ColumnsDataset(columns, repo=path, commit=commits[at], memory_budget=BUDGET)
    assert not memory.streamed and streamed.streamed and streamed.nbytes == memory.nbytes == 3 * BUDGET
    assert streamed.chunking.window_chunks >= 2
    assert same(batches(BatchLoader(streamed, 32)), batches(BatchLoader(memory, 32)))
    for i in (0, 5, 149, N - 1):
        assert all(torch.equal(a, b) for a, b in zip(streamed[i], memory[i]))
    np.testing.assert_array_equal(streamed.column(1), memory.column(1))
    # shuffled: the streamed order is the in-memory loader's with the same ChunkShuffle, two epochs
    order = streamed.chunking.order(True)
    a, b = BatchLoader(streamed, 32, shuffle=True, seed=4), BatchLoader(memory, 32, shuffle=order, seed=4)
    for _ in range(2):
        got = batches(a)
        assert same(got, batches(b))
        labels = torch.cat([y for _, y in got]).reshape(-1)
        assert sorted(labels.tolist()) == list(range(N))  # each sample once


def test_the_shuffle_moves_samples_across_chunks_and_windows(repo) -> None:
    path, first, _ = repo
    streamed = ColumnsDataset(["x10", "y"], repo=path, commit=first, memory_budget=BUDGET)
    rows = streamed.chunking.chunk_rows
    loader = BatchLoader(streamed, N, shuffle=True, seed=0)
    labels = [next(iter(loader))[1].reshape(-1) for _ in range(2)]
    assert not torch.equal(labels[0], labels[1])  # epochs differ
    firsts = labels[0][:rows]
    assert len(set((firsts // rows).tolist())) > 1  # a window's samples are mixed across its chunks
    assert labels[0][0] // rows != 0 or labels[1][0] // rows != 0  # chunks are permuted


def test_a_streamed_loader_holds_at_most_three_windows_within_the_budget(repo) -> None:
    path, first, _ = repo
    streamed = ColumnsDataset(["x01", "y"], repo=path, commit=first, memory_budget=BUDGET)
    loader = BatchLoader(streamed, 48, shuffle=True, seed=1)
    held = []
    for _ in loader:
        assert loader.stream is not None
        windows = [f.result() for f in loader.stream.windows.values() if f.done()]
        held.append(len(loader.stream.windows))
        assert sum(t.numel() * t.element_size() for w in windows for t in w.tensors) <= BUDGET
    assert max(held) <= HELD and len(held) == -(-N // 48)


def test_streamed_ranks_share_each_epoch(repo) -> None:
    path, first, _ = repo
    streamed = ColumnsDataset(["x00", "y"], repo=path, commit=first, memory_budget=BUDGET)
    whole = batches(BatchLoader(streamed, 40, shuffle=True, seed=2))
    parts = [batches(BatchLoader(streamed, 40, shuffle=True, seed=2, shard=(r, 2))) for r in range(2)]
    joined = [tuple(torch.cat(cols) for cols in zip(*(p[step] for p in parts))) for step in range(len(whole))]
    assert same(joined, whole)


def test_a_corrupted_sample_is_found_while_streaming(tmp_path: Path) -> None:
    data = Repo(tmp_path)
    commit = data.write("x", x={i: np.full(4, i, dtype=np.float32) for i in range(40)})
    npy = next((tmp_path / ".hangar" / "data" / "10").glob("*.npy"))
    arr = np.load(npy, mmap_mode="r+")
    arr[33, 0] = 42.0  # a stored value changed behind Hangar's back
    arr.flush()
    del arr
    streamed = ColumnsDataset(["x"], repo=tmp_path, commit=commit, memory_budget=64)
    assert streamed.streamed
    with pytest.raises(UserError, match="DATA CORRUPTION in column 'x' sample #33"):
        batches(BatchLoader(streamed, 8))


def hangar_sample(path: Path, commit: str, column: str, key: int | str) -> np.ndarray:
    hangar = compat.import_hangar()
    with compat.quiet():
        co = hangar.Repository(str(path), exists=True).checkout(commit=commit)
    try:
        return np.asarray(co.columns[column][key])
    finally:
        co.close()


@pytest.mark.parametrize("budget", [None, BUDGET], ids=["memory", "streamed"])
def test_keys_in_the_order_given(repo, budget: int | None) -> None:
    path, _, second = repo
    keys = [20, 3, 290, 5]
    ds = ColumnsDataset(["x01", "y"], repo=path, commit=second, keys=keys, memory_budget=budget, cache_dir=False)
    assert ds.keys == keys and len(ds) == 4
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(ds[i][0].numpy(), hangar_sample(path, second, "x01", key))
        assert int(ds[i][1]) == key
    assert next(iter(BatchLoader(ds, 4)))[1].reshape(-1).tolist() == keys


def test_index_range_is_a_slice_of_the_sorted_keys_or_of_the_keys(repo) -> None:
    path, first, _ = repo
    ds = ColumnsDataset(["y"], repo=path, commit=first, index_range=slice(10, 50, 4))
    assert ds.keys == list(range(10, 50, 4))
    assert [int(x[0]) for x in ds] == list(range(10, 50, 4))
    both = ColumnsDataset(["y"], repo=path, commit=first, keys=np.array([9, 8, 7, 6]), index_range=slice(1, 3))
    assert both.keys == [8, 7]  # numpy ints are keys too
    assert ColumnsDataset(["y"], repo=path, commit=first, keys={12, 3, 100}).keys == [3, 12, 100]  # a set: sorted


def test_a_selection_from_the_column_cache_equals_a_direct_read(repo, tmp_path: Path) -> None:
    path, first, _ = repo
    ColumnsDataset(["x00", "y"], repo=path, commit=first, cache_dir=tmp_path)  # fills the cache
    assert len(list(tmp_path.glob("*.npy"))) == 2
    cached = ColumnsDataset(["x00", "y"], repo=path, commit=first, cache_dir=tmp_path, keys=[7, 1, 200])
    direct = ColumnsDataset(["x00", "y"], repo=path, commit=first, cache_dir=False, keys=[7, 1, 200])
    assert same(batches(BatchLoader(cached, 3)), batches(BatchLoader(direct, 3)))
    assert len(list(tmp_path.glob("*.npy"))) == 2  # a part of a column is not cached


@pytest.mark.parametrize("budget", [None, BUDGET], ids=["memory", "streamed"])
def test_field_names_give_named_items_and_batches(repo, budget: int | None) -> None:
    path, first, _ = repo
    ds = ColumnsDataset(["x10", "y"], repo=path, commit=first, field_names=["image", "label"],
                        memory_budget=budget)
    item = ds[3]
    assert item._fields == ("image", "label") and int(item.label) == 3
    batch = next(iter(BatchLoader(ds, 10)))
    assert batch.image.shape == (10, 8, 6) and batch.label.reshape(-1).tolist() == list(range(10))
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=1)  # items pickled back
    first_batch = next(iter(loader))
    assert first_batch._fields == ("image", "label") and first_batch.label.reshape(-1).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"keys": [1, 999]}, UserError, "column 'x00' has no sample '#999'"),
    ({"keys": [1, 2, 1]}, UserError, "sample '#1' is given twice"),
    ({"keys": "abc"}, TypeError, "keys: expected a list"),
    ({"index_range": (0, 10)}, TypeError, "index_range: expected a slice"),
    ({"index_range": slice(400, 500)}, UserError, "holds no samples"),
    ({"field_names": ["a"]}, ValueError, "1 names for 2 columns"),
    ({"field_names": ["a", "class"]}, ValueError, "'class' is not a field name"),
    ({"memory_budget": "lots"}, ValueError, "memory_budget: 'lots' is not a size"),
])
def test_bad_selections_are_one_clear_error(repo, options, error, match) -> None:
    path, first, _ = repo
    with pytest.raises(error, match=match):
        ColumnsDataset(["x00", "y"], repo=path, commit=first, **options)


def test_a_variable_shape_column_is_a_clear_error(repo) -> None:
    path, first, _ = repo
    with pytest.raises(UserError, match=r"column 'ragged' holds samples of variable shape \(up to \(5,\)\):"
                                        " the loader batches flat fixed-shape ndarray columns only"):
        ColumnsDataset(["ragged"], repo=path, commit=first)


PIPELINE = """
    stages:
      train:
        uses: train
        with: {images: x, labels: y, val_images: val_x, val_labels: val_y}
        deps: [{hangar: [x, y, val_x, val_y]}]
        params: [train]
        outs: [models/model.pt]
        metrics: [metrics/train.json]
      evaluate:
        uses: evaluate
        with: {images: val_x, labels: val_y, metrics: metrics/eval.json, confusion: metrics/confusion.csv}
        deps: [models/model.pt, {hangar: [val_x, val_y]}]
        metrics: [metrics/eval.json]
      evaluate_streamed:
        uses: evaluate
        with: {images: val_x, labels: val_y, metrics: metrics/eval_s.json, confusion: metrics/confusion_s.csv,
               memory_budget: 2kB}
        deps: [models/model.pt, {hangar: [val_x, val_y]}]
        metrics: [metrics/eval_s.json]
"""


def test_the_train_stage_streams_past_its_memory_budget_and_repeats_its_bytes(project: Project) -> None:
    x, y = tiny_data(400)
    flat = (x.reshape(len(x), -1) / 255).astype(np.float32)
    Repo(project.root).write("data", x={i: flat[i] for i in range(300)},
                             y={i: np.array([y[i]], dtype=np.int64) for i in range(300)},
                             val_x={i: flat[i] for i in range(300, 400)},
                             val_y={i: np.array([y[i]], dtype=np.int64) for i in range(300, 400)})
    project.pipeline(PIPELINE)
    project.write("params.yaml", "train: {epochs: 3, batch_size: 16, optimizer: adam, lr: 0.01, memory_budget: 40kB,"
                                 " device: cpu, model: {kind: mlp, layers: [auto, 16, 10]}}\n")
    done = project.hpipe("repro")
    metrics = json.loads(project.read("metrics/train.json"))
    assert metrics["loader"]["streamed"] is True and metrics["loader"]["order"]["kind"] == "chunks"
    assert metrics["hyperparameters"]["memory_budget"] == 40_000
    assert metrics["val_accuracy"] > 0.5
    assert "train: x, y: 77.3 KiB is over the memory budget (29.3 KiB): streamed" in done.out
    assert project.read("metrics/eval_s.json") == project.read("metrics/eval.json")  # the same bytes
    assert project.read("metrics/confusion_s.csv") == project.read("metrics/confusion.csv")
    first = (project.root / "models/model.pt").read_bytes()
    project.hpipe("repro", "-f", "train")
    assert (project.root / "models/model.pt").read_bytes() == first


def test_a_big_read_shared_out_among_worker_processes_is_exact_and_checked(repo, tmp_path: Path) -> None:
    """(Every read counts as big here.) Forked workers read files into one shared buffer: the same
    bytes as in one process, and a corrupted sample in a worker's share is the one error. Run in a
    fresh interpreter: only a single-threaded process forks, and a pytest-xdist worker has threads."""
    import shutil
    import subprocess
    import sys

    path, first, second = repo
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    script = f"""
import os, sys, h5py, hdf5plugin, numpy as np
from pathlib import Path
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.store import HangarStore
from hangar_pipe.training import bulk_read
os.environ["HPIPE_THREADS"] = "2"
one = {{c: bulk_read.read_column(HangarStore(Path({str(path)!r})), {second!r}, c) for c in ("x00", "x01")}}
bulk_read.PARALLEL_BYTES = 0
for column, expected in one.items():
    got = bulk_read.read_column(HangarStore(Path({str(path)!r})), {second!r}, column)
    base = got
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, bulk_read.mmap.mmap), base  # shared
    np.testing.assert_array_equal(got, expected)
copy = Path({str(copy)!r})
rows = bulk_read.locate(HangarStore(copy), {first!r}, "x01", [b"#100"])
backend, uid, dataset = rows.files[int(rows.group[0])]
with h5py.File(copy / ".hangar" / "data" / backend / f"{{uid}}.hdf5", "r+") as fh:  # behind Hangar's back
    ds, at = fh[f"/{{dataset}}"], int(rows.index[0])
    ds[at] = ds[at] + 1.0
try:
    bulk_read.read_column(HangarStore(copy), {first!r}, "x01")
except UserError as exc:
    print("raised:", exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "raised: DATA CORRUPTION in column 'x01' sample #100" in done.stdout
