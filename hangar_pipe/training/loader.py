"""Fast Hangar -> PyTorch data: whole columns read in bulk, batches gathered by index.

Hangar's own `make_torch_dataset` reads one sample at a time (an HDF5 call, a blosc
decompression and a checksum each) and orders samples by `set()`. Here each column is read
once, by grouped slices of Hangar's backend files (HDF5 00/01, numpy memmap 10), checked
against Hangar's per-sample xxh64 checksums, and kept in memory or in a local cache keyed by
the column's fingerprint (bounded: see `hangar_pipe.hangar.column_cache`). Samples are in
sorted key order; shuffling uses a seeded generator.

    from hangar_pipe.torch import ColumnsDataset, BatchLoader
    ds = ColumnsDataset(["mnist_training_images", "mnist_training_labels"])  # the pinned commit
    for x, y in BatchLoader(ds, batch_size=64, shuffle=True, seed=0):
        ...

`ColumnsDataset` is also a map-style torch Dataset, usable with DataLoader workers (fork and
spawn): it pickles as (repo, commit, columns) and reloads in the worker, from the cache when
there is one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from hangar_pipe.core.layout import columns_cache
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.column_cache import ColumnCache
from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.hangar.store import ColumnState, HangarStore, short
from hangar_pipe.training.shapes import column_spec


def sort_keys(keys: Iterable[bytes]) -> list[bytes]:
    """Int keys (`#12`) in numeric order first, then str keys in byte order.

    Int keys have no leading zeros, so numeric order is (length, bytes) order: two stable
    C-level sorts, no Python key function per sample.
    """
    ints = sorted(k for k in keys if k[:1] == b"#")
    ints.sort(key=len)
    return ints + sorted(k for k in keys if k[:1] != b"#")


def key_value(raw: bytes) -> int | str:
    """A record key as the user wrote it: `#12` -> 12, `abc` -> 'abc'."""
    text = raw.decode()
    return int(text[1:]) if text.startswith("#") else text


def column_keys(store: HangarStore, commit: str, name: str) -> list[bytes]:
    return sort_keys(store.samples(commit, name))


def read_column(store: HangarStore, commit: str, name: str, keys: Sequence[bytes] | None = None,
                *, verify: bool = True) -> np.ndarray:
    """A fixed-shape ndarray column as one array, rows in `keys` order (default: sorted keys)."""
    described = column_spec(store, commit, name)
    digests = store.samples(commit, name)
    keys = list(keys) if keys is not None else sort_keys(digests)
    shape, dtype = described.shape, np.dtype(described.dtype)
    out = np.empty((len(keys), *shape), dtype=dtype)
    shape_text = " ".join(map(str, shape)).encode()
    groups: dict[tuple[bytes, bytes, bytes], tuple[list[int], list[int], list[bytes]]] = {}
    for row, spec in enumerate(store.data_specs([digests[k] for k in keys])):
        backend = spec[0]
        if backend == b"10":
            _, uid, checksum, index, shp = spec
            dataset = b""
        elif backend in (b"00", b"01"):
            _, uid, checksum, dataset, index, shp = spec
        else:
            raise UserError(f"column '{name}': backend {backend.decode()} is not supported for"
                            " bulk reads")
        if shp != shape_text:
            raise UserError(f"column '{name}': sample {keys[row].decode()} has another shape than"
                            " the schema")
        group = groups.get((backend, uid, dataset))
        if group is None:
            group = groups[(backend, uid, dataset)] = ([], [], [])
        group[0].append(int(index))
        group[1].append(row)
        group[2].append(checksum)
    data_dir = store.dir / "data"
    for (backend, uid, dataset), (indices, rows, checksums) in groups.items():
        in_file = np.array(indices, dtype=np.int64)
        lo, hi = int(in_file.min()), int(in_file.max()) + 1
        block = _read_block(data_dir / backend.decode(), backend.decode(), uid.decode(),
                            dataset.decode(), lo, hi, shape)
        out[rows] = block[in_file - lo]
        if verify:
            for row, checksum in zip(rows, checksums):
                if xxhash.xxh64_hexdigest(out[row]).encode() != checksum:
                    raise UserError(f"DATA CORRUPTION in column '{name}' sample {keys[row].decode()}:"
                                    " checksum does not match Hangar's record")
    return out


def _rows(lo: int, hi: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Rows lo..hi of a dataset whose samples may be padded past `shape`."""
    return (slice(lo, hi), *(slice(0, d) for d in shape))


def _read_block(folder: Path, backend: str, uid: str, dataset: str, lo: int, hi: int,
                shape: tuple[int, ...]) -> np.ndarray:
    if backend == "10":
        memmap = np.load(folder / f"{uid}.npy", mmap_mode="r")
        return np.asarray(memmap[_rows(lo, hi, shape)])
    import h5py
    import hdf5plugin  # noqa: F401  (registers the blosc filter Hangar's HDF5 files use)

    with h5py.File(folder / f"{uid}.hdf5", "r", swmr=True, libver="latest") as fh:
        ds = fh[f"/{dataset}"]
        if backend == "00":  # rows of flattened samples
            size = int(np.prod(shape))
            return np.asarray(ds[lo:hi, :size]).reshape(hi - lo, *shape)
        return np.asarray(ds[_rows(lo, hi, shape)])


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
    """Columns of one commit as aligned arrays (sorted keys); item i is a tuple of tensors."""

    def __init__(self, columns: Sequence[str], *, repo: str | os.PathLike[str] | None = None,
                 commit: str | None = None, cache_dir: str | os.PathLike[str] | None | bool = True,
                 verify: bool = True) -> None:
        self.repo, self.commit = pinned_commit(repo, commit)
        self.columns = list(columns)
        self.cache_dir = default_cache_dir() if cache_dir is True else (
            Path(cache_dir) if cache_dir else None)
        self.verify = verify
        self.arrays: list[np.ndarray] = []
        self._load()

    def _load(self) -> None:
        store = HangarStore(self.repo)
        try:
            if not store.has_commit(self.commit):
                raise UserError(f"commit {self.commit} not in {self.repo}")
            key_sets = {name: column_keys(store, self.commit, name) for name in self.columns}
            first = key_sets[self.columns[0]]
            for name, keys in key_sets.items():
                if keys != first:
                    raise UserError(f"columns '{self.columns[0]}' and '{name}' have different"
                                    f" sample keys at {short(self.commit)}")
            self.keys = [key_value(k) for k in first]
            states: list[ColumnState] = []
            for name in self.columns:
                state = store.column(self.commit, name)
                assert state is not None
                states.append(state)
            self.fingerprints = {name: state.fingerprint for name, state in zip(self.columns, states)}
            cache = ColumnCache.from_env(self.cache_dir) if self.cache_dir is not None else None
            self.arrays = [self._cached(store, cache, name, state, first)
                           for name, state in zip(self.columns, states)]
        finally:
            store.close()
        self.tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in self.arrays)

    def _cached(self, store: HangarStore, cache: ColumnCache | None, name: str, state: ColumnState,
                keys: list[bytes]) -> np.ndarray:
        """The column from the cache when it holds a sound entry, else read (and cached)."""
        schema = state.schema
        if cache is not None and "shape" in schema and "dtype" in schema:  # else read_column refuses
            shape = (len(keys), *schema["shape"])
            cached = read_entry(cache, state.fingerprint, shape, np.dtype(schema["dtype"]))
            if cached is not None:
                return cached
        array = read_column(store, self.commit, name, keys, verify=self.verify)
        if cache is not None:  # this load's other columns are in use: never evicted for this one
            cache.add(state.fingerprint, npy_bytes(array), set(self.fingerprints.values()))
        return array

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for heavy in ("arrays", "tensors"):
            state.pop(heavy, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()


class BatchLoader:
    """Batches gathered by fancy indexing over whole-column tensors: no per-sample Python work.

    The order is the dataset's sorted key order, or a permutation from a generator seeded with
    `seed + epoch`, so every epoch differs and every run repeats.

    `shard=(rank, world_size)`: this rank's part of every batch, for distributed data parallel.
    Every rank computes the same order and takes its slice of each global batch of `batch_size`
    samples (`torch.tensor_split`: sizes differ by at most one), so the ranks together see each
    sample once per epoch and the global batch stays `batch_size`. A last global batch with fewer
    samples than ranks is left out (with DDP every rank must take every step).
    """

    def __init__(self, dataset: ColumnsDataset, batch_size: int = 64, *, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, device: str | torch.device = "cpu",
                 shard: tuple[int, int] | None = None) -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        self.rank, self.world_size = shard or (0, 1)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard {shard}: the rank must be in 0..world_size-1")
        self.tensors = tuple(t.to(device) for t in dataset.tensors)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last or 0 < n % self.batch_size < self.world_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.dataset)
        order = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).to(self.tensors[0].device)
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.world_size > 1:
                start, stop = _slice_of(start, stop, self.rank, self.world_size)
            if order is None:
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                index = order[start:stop]
                yield tuple(t[index] for t in self.tensors)


def _slice_of(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank's part of the positions start..stop, as `torch.tensor_split` would cut them."""
    size, extra = divmod(stop - start, world_size)
    first = start + rank * size + min(rank, extra)
    return first, first + size + (1 if rank < extra else 0)
