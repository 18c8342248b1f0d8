"""A column's samples read in bulk from Hangar's backend files, any rows at a time.

Hangar keeps each sample in a backend file: numpy `.npy` files (backend 10, read through a
memmap) or HDF5 files (00: rows of flattened samples; 01: samples as they are), several samples
per file, each one's xxh64 checksum in its record. `locate` reads the records once (where every
selected row lives); `ColumnRows.read` then reads any rows by grouped slices of those files, one
slice per file and dataset, and checks every sample against its checksum. `read_column` is the
whole column at once; the streaming loader reads a chunk of rows at a time.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from hangar_pipe.core.workers import can_fork, run_forked
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.keys import sort_keys
from hangar_pipe.hangar.store import HangarStore, short
from hangar_pipe.training.shapes import column_spec

#: samples of one file at most this many apart are read as one slice (the ones between wasted)
GAP = 64
PARALLEL_BYTES = 32 << 20  # a read of HDF5 files this big is shared out among worker processes
MAX_PROCS = 8


def _shared_empty(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """An array in shared anonymous memory: what forked workers write, the parent sees."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.frombuffer(mmap.mmap(-1, max(1, nbytes)), dtype=dtype, count=nbytes // dtype.itemsize).reshape(shape)


@dataclass
class ColumnRows:
    """Where every selected row of one column is: its file (`group`) and its index in it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    data_dir: Path
    files: list[tuple[str, str, str]]  # (backend, uid, dataset) per group
    group: np.ndarray  # per row: the index of its file in `files`
    index: np.ndarray  # per row: the sample's index in that file (dataset)
    checksum: np.ndarray  # per row: Hangar's xxh64 of the sample, as uint64
    keys: list[bytes]  # per row: the sample's key (for errors)
    _open: dict[int | str, Any] = field(default_factory=dict, repr=False)  # files, by path; datasets
    _pid: int = field(default_factory=os.getpid, repr=False)  # the process _open belongs to

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, rows: np.ndarray, *, verify: bool = True) -> np.ndarray:
        """Rows (positions in this selection, any order) as one array, checked if `verify`.

        A big read of HDF5 files is shared out among forked worker processes, one file (dataset)
        at a time, writing into one shared buffer: Hangar compresses every sample on its own,
        and decompressing is most of the time."""
        rows = np.asarray(rows, dtype=np.int64)
        groups = self.group[rows]
        by_group = np.argsort(groups, kind="stable")
        firsts = np.flatnonzero(np.diff(groups[by_group], prepend=-1))
        parts = [at for at in np.split(by_group, firsts[1:]) if len(at)]
        procs = self._processes(len(rows), len(parts))
        shape = (len(rows), *self.shape)
        out = _shared_empty(shape, self.dtype) if procs > 1 else np.empty(shape, dtype=self.dtype)

        def part(k: int) -> None:
            self._own_files()
            at = parts[k]
            self._from_file(int(groups[at[0]]), self.index[rows[at]], out, at)
            if verify:
                self._verify(out, rows, at)

        if procs > 1:
            run_forked(list(range(len(parts))), part, procs, lambda done: None)
        else:
            for k in range(len(parts)):
                part(k)
        return out

    def _processes(self, n: int, files: int) -> int:
        """Worker processes for a read of n rows from that many files (1: in this process)."""
        if n * self.row_bytes < PARALLEL_BYTES or files < 2 or self.files[0][0] == "10" or not can_fork():
            return 1
        from hangar_pipe.training.threads import budget

        return max(1, min(budget(), files, MAX_PROCS))

    def _own_files(self) -> None:
        """In a forked worker: open the files anew (the parent's HDF5 handles are not to be shared)."""
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()

    def _verify(self, out: np.ndarray, rows: np.ndarray, at: np.ndarray) -> None:
        expected = self.checksum[rows[at]]
        for i, row in enumerate(at):
            if xxhash.xxh64_intdigest(out[row]) != expected[i]:
                raise UserError(f"DATA CORRUPTION in column '{self.name}' sample"
                                f" {self.keys[rows[row]].decode()}: checksum does not match Hangar's record")

    def _from_file(self, group: int, in_file: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """Samples `in_file` of one file into `out[at]`: each run of near samples one read, straight
        into place when the run is whole and its rows are consecutive in `out` (the usual case)."""
        order = np.argsort(in_file, kind="stable")
        wanted = in_file[order]
        for run in np.split(np.arange(len(wanted)), np.flatnonzero(np.diff(wanted) > GAP) + 1):
            lo, hi = int(wanted[run[0]]), int(wanted[run[-1]]) + 1
            targets = at[order[run]]
            if hi - lo == len(run) and bool(np.all(np.diff(targets) == 1)):
                first = int(targets[0])
                self._read_into(group, lo, hi, out[first:first + len(run)])
            else:
                block = np.empty((hi - lo, *self.shape), dtype=self.dtype)
                self._read_into(group, lo, hi, block)
                out[targets] = block[wanted[run] - lo]

    def _read_into(self, group: int, lo: int, hi: int, dest: np.ndarray) -> None:
        """Samples lo..hi of a group's file into `dest` (C-contiguous, hi - lo rows)."""
        backend, _uid, _dataset = self.files[group]
        handle = self._handle(group)
        if backend == "10":
            handle.read_into(lo, hi, dest)
        elif backend == "00":  # rows of flattened samples
            size = dest[0].size if len(dest) else 0
            handle.read_direct(dest.reshape(hi - lo, size), np.s_[lo:hi, :size])
        else:
            handle.read_direct(dest, (slice(lo, hi), *(slice(0, d) for d in self.shape)))

    def _handle(self, group: int) -> Any:
        """The memmap or HDF5 dataset of a group (each file opened once)."""
        handle = self._open.get(group)
        if handle is None:
            backend, uid, dataset = self.files[group]
            path = self.data_dir / backend / f"{uid}.{'npy' if backend == '10' else 'hdf5'}"
            opened = self._open.get(str(path))
            if opened is None:
                opened = self._open[str(path)] = _open_file(path, backend)
            handle = self._open[group] = opened if backend == "10" else opened[f"/{dataset}"]
        return handle

    def close(self) -> None:
        """Let go of the open files (a later read opens them again)."""
        for handle in self._open.values():
            if hasattr(handle, "close"):
                handle.close()
        self._open.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}, "_pid": -1}


@dataclass
class NpyFile:
    """A backend-10 `.npy` file, read with `preadv` straight into the destination: no mapping,
    so a streamed column's pages are not counted in the process's memory (a memmap's are)."""

    path: Path
    fd: int
    offset: int  # where the array starts
    shape: tuple[int, ...]  # of the whole array: (samples, *the padded sample shape)
    dtype: np.dtype[Any]
    fortran: bool

    @classmethod
    def open(cls, path: Path) -> NpyFile:
        from numpy.lib import format as npy

        with open(path, "rb") as fh:
            version = npy.read_magic(fh)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
        return cls(path, os.open(path, os.O_RDONLY), offset, tuple(shape), np.dtype(dtype), fortran)

    def read_into(self, lo: int, hi: int, dest: np.ndarray) -> None:
        """Samples lo..hi into `dest` (hi - lo rows of the column's sample shape)."""
        whole_rows = not self.fortran and self.dtype == dest.dtype and self.shape[1:] == dest.shape[1:]
        if not (whole_rows and dest.flags.c_contiguous):  # padded samples, say: a memmap's slice
            rows = (slice(lo, hi), *(slice(0, d) for d in dest.shape[1:]))
            dest[...] = np.load(self.path, mmap_mode="r")[rows]
            return
        view = dest.data.cast("B")
        at, done = self.offset + lo * (dest.nbytes // max(1, hi - lo)), 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], at + done)
            if got <= 0:
                raise UserError(f"{self.path}: ended early (a damaged or partial Hangar data file)")
            done += got

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_file(path: Path, backend: str) -> Any:
    """A backend file: a `.npy` (10), or an HDF5 file without a chunk cache (00, 01: Hangar
    stores each sample in chunks of its own, and each is read once per read)."""
    if backend == "10":
        return NpyFile.open(path)
    import h5py
    import hdf5plugin  # noqa: F401  (registers the blosc filter Hangar's HDF5 files use)

    return h5py.File(path, "r", swmr=True, libver="latest", rdcc_nbytes=0)


def locate(store: HangarStore, commit: str, name: str, keys: Sequence[bytes],
           samples: dict[bytes, bytes] | None = None) -> ColumnRows:
    """Where each of `keys` is stored in column `name` at `commit` (its records only; `samples`:
    the column's key -> digest records, when the caller has them already)."""
    described = column_spec(store, commit, name)
    digests = store.samples(commit, name) if samples is None else samples
    missing = next((k for k in keys if k not in digests), None)
    if missing is not None:
        raise UserError(f"column '{name}' has no sample {missing.decode()!r} at {short(commit)}"
                        f" ({len(digests)} samples)")
    raws = store.data_records([digests[k] for k in keys])
    shape_text = " ".join(map(str, described.shape)).encode()
    parsed = _parse_alike(raws, shape_text) or _parse_each(raws, shape_text)
    if isinstance(parsed, int):
        raise UserError(f"column '{name}': sample {keys[parsed].decode()} has another shape than the schema")
    if isinstance(parsed, bytes):
        raise UserError(f"column '{name}': backend {parsed.decode()} is not supported for bulk reads")
    files, group, index, checksum = parsed
    return ColumnRows(name, described.shape, np.dtype(described.dtype), store.dir / "data", files,
                      group, index, checksum, list(keys))


Parsed = tuple[list[tuple[str, str, str]], np.ndarray, np.ndarray, np.ndarray]
_HEX = np.zeros(256, dtype=np.uint64)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)


def _parse_alike(raws: list[bytes], shape_text: bytes) -> Parsed | int | None:
    """Records of one backend, all with the same fields, parsed by numpy in bulk (None: they are
    not alike; an int: the first row with another shape)."""
    if not raws:
        return None
    fields = b":".join(raws).split(b":")
    width = raws[0].count(b":") + 1
    if width not in (5, 6) or len(fields) != len(raws) * width:
        return None
    table = np.array(fields).reshape(len(raws), width)
    backend = table[0, 0]
    if not bool(np.all(table[:, 0] == backend)) or (backend == b"10") != (width == 5):
        return None
    if backend not in (b"00", b"01", b"10") or table.dtype.itemsize < 16 or any(len(c) != 16 for c in table[:8, 2]):
        return None
    wrong = np.flatnonzero(table[:, -1] != shape_text)
    if len(wrong):
        return int(wrong[0])
    where = np.char.add(np.char.add(table[:, 1], b":"), table[:, 3] if width == 6 else b"")
    names, group = np.unique(where, return_inverse=True)
    files = [(backend.decode(), *n.decode().split(":")) for n in names]
    digits = _HEX[np.frombuffer(table[:, 2].astype("S16").tobytes(), np.uint8).reshape(len(raws), 16)]
    checksum = np.bitwise_or.reduce(digits << np.arange(60, -1, -4, dtype=np.uint64), axis=1)
    return files, group.astype(np.int32), table[:, -2].astype(np.int64), checksum


def _parse_each(raws: list[bytes], shape_text: bytes) -> Parsed | int | bytes:
    """Records parsed one by one (mixed backends); an int: a row with another shape; bytes: an
    unsupported backend."""
    files: dict[tuple[str, str, str], int] = {}
    group = np.empty(len(raws), dtype=np.int32)
    index = np.empty(len(raws), dtype=np.int64)
    checksum = np.empty(len(raws), dtype=np.uint64)
    for row, raw in enumerate(raws):
        spec = raw.split(b":")
        backend = spec[0]
        if backend == b"10":
            _, uid, check, at, shape = spec
            dataset = b""
        elif backend in (b"00", b"01"):
            _, uid, check, dataset, at, shape = spec
        else:
            return backend
        if shape != shape_text:
            return row
        where = (backend.decode(), uid.decode(), dataset.decode())
        group[row] = files.setdefault(where, len(files))
        index[row], checksum[row] = int(at), int(check, 16)
    return list(files), group, index, checksum


def read_column(store: HangarStore, commit: str, name: str, keys: Sequence[bytes] | None = None,
                *, verify: bool = True, samples: dict[bytes, bytes] | None = None) -> np.ndarray:
    """A fixed-shape ndarray column as one array, rows in `keys` order (default: sorted keys)."""
    samples = store.samples(commit, name) if samples is None else samples
    keys = list(keys) if keys is not None else sort_keys(samples)
    rows = locate(store, commit, name, keys, samples)
    try:
        return rows.read(np.arange(len(keys)), verify=verify)
    finally:
        rows.close()
