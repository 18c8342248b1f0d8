"""The user's function over samples: one at a time, or `batch` at a time, in N processes.

`fn(sample, **args)` gets a dict of input column -> array (one sample, or a batch of them with
`batch:`) and returns a dict of output column -> array (or, for one output column, the array).
Every result is checked against the output schema (declared, the output column's own, or the first
result's): a wrong type, shape or dtype is one line naming the sample's key. A function that raises
is reported with the key of the sample it failed on (a batch that fails is retried one sample at a
time to find it). With N workers the first step runs here (it fixes the schema), the others in N
forked processes that write into shared memory (core.workers.run_forked).
"""

from __future__ import annotations

import importlib
import mmap
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hangar_pipe.core.workers import can_fork, run_forked
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.keys import key_value


class MapFailure(UserError):
    """The function failed on a sample: one line naming it, exit code 1, nothing committed."""

    exit_code = 1


@dataclass(frozen=True)
class Schema:
    """What every sample of an output column is: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def __str__(self) -> str:
        return f"shape {self.shape} {self.dtype}"


def load_function(target: str) -> Callable[..., Any]:
    """`module:function`, imported; one line when it cannot be."""
    module, _, name = target.partition(":")
    if not module or not name:
        raise UserError(f"with.fn: expected 'module:function', got {target!r}")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception as exc:  # the user's module failed to import: say why, in one line
        raise UserError(f"with.fn: cannot import module '{module}' ({type(exc).__name__}: {exc})") from None
    if not callable(found):
        raise UserError(f"with.fn: module '{module}' has no function '{name}'")
    return found  # type: ignore[no-any-return]


def _shared(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """An array in shared anonymous memory: what forked workers write, the parent sees."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.frombuffer(mmap.mmap(-1, max(1, nbytes)), dtype=dtype,
                         count=nbytes // dtype.itemsize).reshape(shape)


@dataclass
class Mapper:
    """The function, its arguments, and the output schemas (filled in by the first result)."""

    fn: Callable[..., Any]
    target: str
    outputs: list[str]
    batch: int | None = None
    args: dict[str, Any] = field(default_factory=dict)
    schemas: dict[str, Schema] = field(default_factory=dict)

    def compute(self, arrays: Mapping[str, np.ndarray], keys: list[bytes], workers: int = 1
                ) -> dict[str, np.ndarray]:
        """Every output column for these samples (rows in `keys` order)."""
        step = self.batch or 1
        spans = [(lo, min(lo + step, len(keys))) for lo in range(0, len(keys), step)]
        if not spans:
            return {c: np.empty((0, *s.shape), s.dtype) for c, s in self.schemas.items()}
        first = self._call(arrays, keys, *spans[0])
        procs = min(workers, len(spans) - 1) if can_fork() else 1
        make = _shared if procs > 1 else np.empty
        out = {c: make((len(keys), *self.schemas[c].shape), self.schemas[c].dtype) for c in self.outputs}
        for c in self.outputs:
            out[c][:spans[0][1]] = first[c]

        def fill(chunk: list[tuple[int, int]]) -> None:
            for lo, hi in chunk:
                result = self._call(arrays, keys, lo, hi)
                for c in self.outputs:
                    out[c][lo:hi] = result[c]

        if procs > 1:
            run_forked(_chunks(spans[1:], procs), fill, procs, lambda done: None)
        else:
            fill(spans[1:])
        return out

    def _call(self, arrays: Mapping[str, np.ndarray], keys: list[bytes], lo: int, hi: int
              ) -> dict[str, np.ndarray]:
        """The checked results for rows lo..hi (one sample, or a batch)."""
        if self.batch is None:
            sample = {c: a[lo] for c, a in arrays.items()}
            return {c: v[None] for c, v in self._checked(self._run(sample, keys[lo]), keys[lo], None).items()}
        try:
            result = self.fn({c: a[lo:hi] for c, a in arrays.items()}, **self.args)
        except Exception:
            if hi - lo == 1:
                raise self._failed(keys[lo]) from None
            for i in range(lo, hi):  # find the sample it fails on
                self._call(arrays, keys, i, i + 1)
            raise self._failed(keys[lo]) from None
        return self._checked(result, keys[lo], hi - lo)

    def _run(self, sample: dict[str, np.ndarray], key: bytes) -> Any:
        try:
            return self.fn(sample, **self.args)
        except Exception:
            raise self._failed(key) from None

    def _failed(self, key: bytes) -> MapFailure:
        import sys
        import traceback

        exc = sys.exc_info()[1]
        if os.environ.get("HPIPE_DEBUG"):
            traceback.print_exc()
        return MapFailure(f"fn {self.target} failed on sample {key_value(key)!r}: {type(exc).__name__}: {exc}")

    def _checked(self, result: Any, key: bytes, rows: int | None) -> dict[str, np.ndarray]:
        """The result as arrays of the output schemas; one line naming the sample if it is not."""
        what = f"sample {key_value(key)!r}" if rows is None else f"the batch from sample {key_value(key)!r}"
        if isinstance(result, np.ndarray) and len(self.outputs) == 1:  # one output: its array alone
            result = {self.outputs[0]: result}
        if not isinstance(result, Mapping):
            raise UserError(f"fn {self.target} returned {type(result).__name__} for {what}; expected a dict"
                            f" of output column -> array ({', '.join(self.outputs)})")
        if missing := [c for c in self.outputs if c not in result]:
            raise UserError(f"fn {self.target} returned no '{missing[0]}' for {what} (it returned:"
                            f" {', '.join(map(str, result)) or 'nothing'})")
        checked = {}
        for column in self.outputs:
            try:
                value = np.asarray(result[column])
            except Exception as exc:
                raise UserError(f"fn {self.target}: '{column}' of {what} is not an array ({exc})") from None
            shape = value.shape if rows is None else value.shape[1:]
            if rows is not None and (value.ndim == 0 or value.shape[0] != rows):
                raise UserError(f"fn {self.target}: '{column}' of {what} has {value.shape[:1] or 'no'} rows,"
                                f" expected {rows} (one per sample of the batch)")
            schema = self.schemas.setdefault(column, Schema(shape, value.dtype))
            if value.dtype.kind not in "biuf" or shape != schema.shape or value.dtype != schema.dtype:
                raise UserError(f"fn {self.target}: '{column}' of {what} is shape {shape} {value.dtype},"
                                f" expected {schema} (numbers, one shape and dtype per column)")
            checked[column] = value
        return checked


def _chunks(spans: list[tuple[int, int]], procs: int) -> list[list[tuple[int, int]]]:
    """The spans in 4 runs per process, each of consecutive spans (rows written together)."""
    n = max(1, min(len(spans), procs * 4))
    size = -(-len(spans) // n)
    return [spans[i:i + size] for i in range(0, len(spans), size)]
