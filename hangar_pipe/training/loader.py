"""Fast Hangar -> PyTorch data: columns read in bulk, batches gathered by index.

Hangar's own `make_torch_dataset` reads one sample at a time (an HDF5 call, a blosc
decompression and a checksum each) and orders samples by `set()`. Here the columns are read by
slices of Hangar's backend files (training.bulk_read), checked against Hangar's per-sample
xxh64 checksums, and kept in memory or in a local cache keyed by the column's fingerprint
(bounded: see `hangar_pipe.hangar.column_cache`); columns bigger than the memory budget are
streamed a window of chunks at a time (training.streaming). Samples are in sorted key order, or
the `keys` given (training.selection); shuffling uses a seeded generator (training.order).

    from hangar_pipe.torch import ColumnsDataset, BatchLoader
    ds = ColumnsDataset(["mnist_training_images", "mnist_training_labels"])  # the pinned commit
    for x, y in BatchLoader(ds, batch_size=64, shuffle=True, seed=0):
        ...

`ColumnsDataset` is also a map-style torch Dataset, usable with DataLoader workers (fork and
spawn): it pickles as (repo, commit, columns, selection) and reloads in the worker, from the
cache when there is one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hangar_pipe.core.layout import columns_cache
from hangar_pipe.core.sizes import parse_size
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.column_cache import ColumnCache
from hangar_pipe.hangar.keys import key_value, sort_keys
from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.hangar.store import ColumnState, HangarStore
from hangar_pipe.training.bulk_read import locate, read_column
from hangar_pipe.training.hyperparams import Hyperparams
from hangar_pipe.training.order import ChunkShuffle, FullShuffle, Order, Sequential
from hangar_pipe.training.selection import Selection, item_type, positions_in
from hangar_pipe.training.shapes import column_spec
from hangar_pipe.training.streaming import Chunking, Streamer

DEFAULT_BUDGET = Hyperparams.memory_budget  # bytes of column data loaded whole; more is streamed


def column_keys(store: HangarStore, commit: str, name: str) -> list[bytes]:
    return sort_keys(store.samples(commit, name))


def read_entry(cache: ColumnCache, fingerprint: str, shape: tuple[int, ...], dtype: np.dtype[Any]
               ) -> np.ndarray | None:
    """A cache entry's array, marked as used; None if there is none, or it cannot be read or is
    not the column's shape and dtype (it is then written again)."""
    path = cache.hit(fingerprint)
    if path is None:
        return None
    try:
        array: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # evicted by another process meanwhile, or damaged
        return None
    return array if array.shape == shape and array.dtype == dtype else None


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def default_cache_dir() -> Path | None:
    root = os.environ.get("HPIPE_ROOT")
    return columns_cache(Path(root)) if root else None


class ColumnsDataset(torch.utils.data.Dataset):
    """Columns of one commit as aligned samples; item i is a tuple of tensors (or a named tuple).

    Columns that fit in `memory_budget` (default 4 GiB: a fixed default, so that whether data is
    streamed, and so the shuffle, never depends on the machine) are loaded whole. Bigger ones are
    streamed (`streamed`): a BatchLoader reads them a window of chunks at a time
    (training.streaming); `dataset[i]` reads one sample.
    """

    def __init__(self, columns: Sequence[str], *, repo: str | os.PathLike[str] | None = None,
                 commit: str | None = None, keys: Iterable[int | str] | None = None,
                 index_range: slice | None = None, field_names: Sequence[str] | None = None,
                 memory_budget: int | str | None = None,
                 cache_dir: str | os.PathLike[str] | None | bool = True, verify: bool = True) -> None:
        self.repo, self.commit = pinned_commit(repo, commit)
        self.columns = list(columns)
        if not self.columns:
            raise ValueError("ColumnsDataset needs at least one column")
        self.selection = Selection.of(keys, index_range)
        self.item = item_type(field_names, self.columns)
        budget = DEFAULT_BUDGET if memory_budget is None else parse_size(memory_budget)
        if budget is None:
            raise ValueError(f"memory_budget: {memory_budget!r} is not a size (such as 4GiB or 500MB)")
        self.memory_budget = budget
        self.cache_dir = default_cache_dir() if cache_dir is True else (
            Path(cache_dir) if cache_dir else None)
        self.verify = verify
        self.arrays: list[np.ndarray] = []
        self._keys: list[int | str] | None = None
        self._load()

    def _load(self) -> None:
        store = HangarStore(self.repo)
        try:
            if not store.has_commit(self.commit):
                raise UserError(f"commit {self.commit} not in {self.repo}")
            specs = [column_spec(store, self.commit, name) for name in self.columns]
            samples = {name: store.samples(self.commit, name) for name in self.columns}
            chosen = self.selection.rows(samples, self.commit)
            self.raw_keys = chosen
            states = {name: self._state(store, name) for name in self.columns}
            self.fingerprints = {name: state.fingerprint for name, state in states.items()}
            self.shapes = [s.shape for s in specs]  # of one sample, per column
            self.row_bytes = [int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize for s in specs]
            self.chunking = Chunking.for_budget(sum(self.row_bytes), self.memory_budget)
            if self.streamed:
                self.sources = [locate(store, self.commit, name, chosen, samples[name]) for name in self.columns]
            else:
                self.arrays = self._arrays(store, samples, states, chosen)
        finally:
            store.close()
        self.tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in self.arrays)

    def _state(self, store: HangarStore, name: str) -> ColumnState:
        state = store.column(self.commit, name)
        assert state is not None  # column_spec found it
        return state

    @property
    def nbytes(self) -> int:
        """The bytes of the selected samples, every column."""
        return len(self.raw_keys) * sum(self.row_bytes)

    @property
    def streamed(self) -> bool:
        return self.nbytes > self.memory_budget

    def _arrays(self, store: HangarStore, samples: dict[str, dict[bytes, bytes]],
                states: dict[str, ColumnState], chosen: list[bytes]) -> list[np.ndarray]:
        """Each column loaded whole: from the cache when it holds a sound entry, else read."""
        cache = ColumnCache.from_env(self.cache_dir) if self.cache_dir is not None else None
        arrays = []
        for name in self.columns:
            whole = sort_keys(samples[name])
            state = states[name]
            array = self._cached(cache, state, len(whole))
            if array is None and self.selection.everything:
                array = read_column(store, self.commit, name, chosen, verify=self.verify, samples=samples[name])
                if cache is not None:  # this load's other columns are in use: never evicted for it
                    cache.add(state.fingerprint, npy_bytes(array), set(self.fingerprints.values()))
            elif array is None:  # a part of the column: read that part, cache nothing
                array = read_column(store, self.commit, name, chosen, verify=self.verify, samples=samples[name])
            elif not self.selection.everything:
                array = array[positions_in(chosen, whole)]
            arrays.append(array)
        return arrays

    def _cached(self, cache: ColumnCache | None, state: ColumnState, rows: int) -> np.ndarray | None:
        schema = state.schema
        if cache is None:
            return None
        return read_entry(cache, state.fingerprint, (rows, *schema["shape"]), np.dtype(schema["dtype"]))

    def streamer(self) -> Streamer:
        """A reader of this (streamed) dataset's windows, for one BatchLoader."""
        return Streamer(self.sources, self.chunking.chunk_rows, verify=self.verify)

    def order(self, shuffle: bool | Order) -> Order:
        """The loader's order: a full shuffle in memory, chunks and windows when streamed."""
        if not isinstance(shuffle, bool):
            if self.streamed and not isinstance(shuffle, ChunkShuffle):
                raise ValueError(f"{type(shuffle).__name__}: a streamed dataset is read in chunks; give"
                                 " shuffle=True (its ChunkShuffle) or a ChunkShuffle")
            return shuffle
        if self.streamed:
            return self.chunking.order(shuffle)
        return in_memory_order(shuffle)

    def column(self, index: int) -> np.ndarray:
        """One whole column (labels, to check them), read in full when streamed."""
        if not self.streamed:
            return self.arrays[index]
        return self.sources[index].read(np.arange(len(self)), verify=self.verify)

    def wrap(self, values: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """An item or batch as the caller asked for it: a tuple, or the field_names' named tuple."""
        return values if self.item is None else self.item._make(values)

    def __len__(self) -> int:
        return len(self.raw_keys)

    @property
    def keys(self) -> list[int | str]:
        """The samples' keys as Hangar has them (ints and strs), in the dataset's order."""
        if self._keys is None:
            self._keys = [key_value(k) for k in self.raw_keys]
        return self._keys

    @keys.setter
    def keys(self, value: list[int | str]) -> None:
        self._keys = value

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if self.streamed:
            row = np.array([range(len(self))[index]])
            return self.wrap(tuple(torch.from_numpy(s.read(row, verify=self.verify)[0]) for s in self.sources))
        return self.wrap(tuple(t[index] for t in self.tensors))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for heavy in ("arrays", "tensors", "sources", "item", "_keys"):
            state.pop(heavy, None)
        state["field_names"] = None if self.item is None else self.item._fields
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.item = item_type(state.pop("field_names"), state["columns"])
        self.__dict__.update(state)
        self.arrays, self._keys = [], None
        self._load()


def in_memory_order(shuffle: bool | Order) -> Order:
    """The order of data in memory: a full shuffle, sorted order, or the one given."""
    if not isinstance(shuffle, bool):
        return shuffle
    return FullShuffle() if shuffle else Sequential()


class TensorColumns:
    """Aligned tensors (or arrays) in memory, batched by a BatchLoader like a ColumnsDataset:
    `BatchLoader(TensorColumns(x, y), 64, shuffle=True, seed=0)` for data that is not in Hangar."""

    streamed = False
    memory_budget = None

    def __init__(self, *tensors: torch.Tensor | np.ndarray, field_names: Sequence[str] | None = None) -> None:
        self.tensors = tuple(torch.as_tensor(t) for t in tensors)
        if not self.tensors or len({len(t) for t in self.tensors}) != 1:
            raise ValueError("TensorColumns needs tensors of the same length (at least one)")
        self.shapes = [tuple(t.shape[1:]) for t in self.tensors]  # of one sample, per column
        self.item = item_type(field_names, [f"column {i}" for i in range(len(self.tensors))])

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.wrap(tuple(t[index] for t in self.tensors))

    def order(self, shuffle: bool | Order) -> Order:
        return in_memory_order(shuffle)

    def streamer(self) -> Streamer:
        raise ValueError("TensorColumns are in memory: nothing to stream")

    def wrap(self, values: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return values if self.item is None else self.item._make(values)


class BatchLoader:
    """Batches gathered by fancy indexing: no per-sample Python work.

    The order (training.order) is the dataset's sorted key order, or with `shuffle=True` a
    permutation from a generator seeded with `seed + epoch` (every epoch differs, every run
    repeats): a full one in memory, chunks and windows for a streamed dataset. An `Order` may be
    given instead (a `ChunkShuffle` over in-memory data gives the streamed order).

    `shard=(rank, world_size)`: this rank's part of every batch, for distributed data parallel.
    Every rank computes the same order and takes its slice of each global batch of `batch_size`
    samples (`torch.tensor_split`: sizes differ by at most one), so the ranks together see each
    sample once per epoch and the global batch stays `batch_size`. A last global batch with fewer
    samples than ranks is left out (with DDP every rank must take every step).
    """

    def __init__(self, dataset: ColumnsDataset | TensorColumns, batch_size: int = 64, *,
                 shuffle: bool | Order = False,
                 seed: int = 0, drop_last: bool = False, device: str | torch.device = "cpu",
                 shard: tuple[int, int] | None = None) -> None:
        self.dataset, self.batch_size, self.order = dataset, batch_size, dataset.order(shuffle)
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        self.rank, self.world_size = shard or (0, 1)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard {shard}: the rank must be in 0..world_size-1")
        self.device = torch.device(device)
        self.stream = dataset.streamer() if dataset.streamed else None
        self.tensors = () if self.stream else tuple(t.to(device) for t in dataset.tensors)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last or 0 < n % self.batch_size < self.world_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.dataset)
        plan = self.order.plan(n, self.seed, self.epoch)
        self.epoch += 1
        order = plan.positions
        if self.stream is not None:
            self.stream.start(plan)
        elif order is not None:
            order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.world_size > 1:
                start, stop = _slice_of(start, stop, self.rank, self.world_size)
            if self.stream is not None:
                batch = tuple(t.to(self.device) for t in self.stream.rows(start, stop))
            elif order is None:
                batch = tuple(t[start:stop] for t in self.tensors)
            else:
                index = order[start:stop]
                batch = tuple(t[index] for t in self.tensors)
            yield self.dataset.wrap(batch)

    def record(self) -> dict[str, Any]:
        """How the data was read, as plain data (for the metrics and the checkpoint)."""
        return {"streamed": self.dataset.streamed, "memory_budget": self.dataset.memory_budget,
                "order": self.order.record()}


def _slice_of(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank's part of the positions start..stop, as `torch.tensor_split` would cut them."""
    size, extra = divmod(stop - start, world_size)
    first = start + rank * size + min(rank, extra)
    return first, first + size + (1 if rank < extra else 0)
