"""Columns bigger than the memory budget, streamed from Hangar's files a window at a time.

A streamed epoch follows a `ChunkShuffle` plan (training.order): windows of whole chunks of
consecutive samples. Before the first position of a window is needed, its chunks are read
(in file order, runs of neighbouring chunks as one read, every sample checked against Hangar's
checksum); the next window is read ahead on a thread while the current one is trained on. At
most three windows are held (the one in use, the next one, and the one after it being read
ahead when a batch straddles two), so `Chunking.for_budget` sizes a window to a third of the
budget.
"""

from __future__ import annotations

import bisect
import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from hangar_pipe.training.bulk_read import ColumnRows
from hangar_pipe.training.order import ChunkShuffle, Plan

CHUNK_BYTES = 1 << 20  # a chunk is about this many bytes of all the columns (one read each)
MIN_CHUNKS = 8  # chunks per window at least, budget allowing (for the shuffle's reach)
HELD = 3  # windows held at once at most


@dataclass(frozen=True)
class Chunking:
    """Samples per chunk and chunks per window: what a budget allows for rows of `row_bytes`."""

    chunk_rows: int
    window_chunks: int

    @classmethod
    def for_budget(cls, row_bytes: int, budget: int) -> Chunking:
        window_rows = max(1, budget // HELD // max(1, row_bytes))
        chunk_rows = max(1, min(CHUNK_BYTES // max(1, row_bytes), window_rows // MIN_CHUNKS))
        return cls(chunk_rows, max(1, window_rows // chunk_rows))

    @property
    def window_size(self) -> int:
        """Samples per window."""
        return self.chunk_rows * self.window_chunks

    def order(self, shuffle: bool) -> ChunkShuffle:
        return ChunkShuffle(self.chunk_rows, self.window_chunks, shuffle)


@dataclass
class Window:
    """A window's samples, all columns, by chunk id in ascending order (`ids`), `starts` apart."""

    ids: torch.Tensor
    starts: torch.Tensor
    tensors: tuple[torch.Tensor, ...]
    local: torch.Tensor | None = None  # per position of the window (in plan order): its row here


class Streamer:
    """The batches of one epoch's plan, from windows read as the plan reaches them."""

    def __init__(self, columns: list[ColumnRows], chunk_rows: int, *, verify: bool = True) -> None:
        # copies: the open files belong to the reading thread
        self.columns = [dataclasses.replace(c, _open={}) for c in columns]
        self.chunk_rows, self.verify, self.n = chunk_rows, verify, len(columns[0])
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="hpipe-stream")
        self.windows: dict[int, Future[Window]] = {}
        self.plan = Plan(None)

    def start(self, plan: Plan) -> None:
        """A new epoch: forget the last one's windows, start reading the first."""
        assert plan.windows is not None and plan.ends is not None and plan.positions is not None
        self.plan, self.windows = plan, {}
        self._ask(0)

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, ...]:
        """The samples at positions start..stop of the plan, every column."""
        ends = self.plan.ends
        assert ends is not None
        w = bisect.bisect_right(ends, start)
        for old in [k for k in self.windows if k < w]:
            del self.windows[old]
        parts: list[tuple[torch.Tensor, ...]] = []
        while start < stop:
            end = min(stop, ends[w])
            window, first = self._window(w), ends[w - 1] if w else 0
            assert window.local is not None
            local = window.local[start - first:end - first]
            parts.append(tuple(t[local] for t in window.tensors))
            start, w = end, w + 1
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(columns) for columns in zip(*parts))

    def _window(self, w: int) -> Window:
        """Window w (waiting for its read) with where its positions are in it; the next one asked for."""
        self._ask(w)
        self._ask(w + 1)
        window = self.windows[w].result()
        if window.local is None:  # once per window, not per batch
            positions, ends = self.plan.positions, self.plan.ends
            assert positions is not None and ends is not None
            mine = positions[(ends[w - 1] if w else 0):ends[w]]
            chunk = torch.div(mine, self.chunk_rows, rounding_mode="floor")
            window.local = window.starts[torch.searchsorted(window.ids, chunk)] + mine % self.chunk_rows
        return window

    def _ask(self, w: int) -> None:
        windows = self.plan.windows
        assert windows is not None
        if w < len(windows) and w not in self.windows:
            self.windows[w] = self.reader.submit(self._read, windows[w])

    def _read(self, chunk_ids: torch.Tensor) -> Window:
        """The chunks' samples, read in file order: runs of neighbouring chunks as one read."""
        ids = torch.sort(chunk_ids).values
        first = ids * self.chunk_rows
        sizes = torch.clamp(torch.full_like(ids, self.chunk_rows), max=self.n - first)
        starts = torch.cumsum(sizes, 0) - sizes
        rows = np.concatenate([np.arange(a, a + s) for a, s in zip(first.tolist(), sizes.tolist())])
        tensors = tuple(torch.from_numpy(c.read(rows, verify=self.verify)) for c in self.columns)
        return Window(ids, starts, tensors)

    def close(self) -> None:
        self.reader.shutdown(wait=True, cancel_futures=True)
        for c in self.columns:
            c.close()
