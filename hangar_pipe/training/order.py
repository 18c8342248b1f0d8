"""The order a BatchLoader visits samples in, one epoch at a time.

An order is a pure function of (samples, seed, epoch): every run repeats it, every epoch differs.

- `Sequential`: sorted key order (positions 0..n-1).
- `FullShuffle`: a uniform permutation, `torch.randperm` from a generator seeded `seed + epoch`.
  What the in-memory loader does by default.
- `ChunkShuffle(chunk_rows, window_chunks)`: what stays cheap when the data is streamed from
  disk. Positions are cut into chunks of `chunk_rows` consecutive samples; the chunks are
  permuted, taken `window_chunks` at a time (a window, the most the loader holds in memory),
  and the samples of each window are permuted among themselves. Every read is a whole chunk, and
  a sample can land anywhere in its window. The in-memory loader gives the same order with the
  same settings, so a streamed run and an in-memory one can be compared byte for byte.

Each order says where its windows are (`Plan.windows`): the streaming loader reads a window's
chunks before the first of its positions is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class Plan:
    """One epoch: the positions in visiting order (None: 0..n-1) and, for a streamed read, the
    windows in that order: the chunk ids of each and where each ends in `positions`."""

    positions: torch.Tensor | None
    windows: list[torch.Tensor] | None = None
    ends: list[int] | None = None


class Order(Protocol):
    def plan(self, n: int, seed: int, epoch: int) -> Plan: ...

    def record(self) -> dict[str, Any]: ...


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + epoch)


@dataclass(frozen=True)
class Sequential:
    def plan(self, n: int, seed: int, epoch: int) -> Plan:
        return Plan(None)

    def record(self) -> dict[str, Any]:
        return {"kind": "sequential"}


@dataclass(frozen=True)
class FullShuffle:
    def plan(self, n: int, seed: int, epoch: int) -> Plan:
        return Plan(torch.randperm(n, generator=_generator(seed, epoch)))

    def record(self) -> dict[str, Any]:
        return {"kind": "full"}


@dataclass(frozen=True)
class ChunkShuffle:
    """Chunks permuted, then samples permuted within windows of `window_chunks` chunks."""

    chunk_rows: int
    window_chunks: int
    shuffle: bool = True  # False: chunks and samples in order, still in windows (streamed, unshuffled)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1 or self.window_chunks < 1:
            raise ValueError(f"chunk_rows and window_chunks must be >= 1, got {self}")

    def plan(self, n: int, seed: int, epoch: int) -> Plan:
        chunks = -(-n // self.chunk_rows)
        generator = _generator(seed, epoch) if self.shuffle else None
        ids = torch.randperm(chunks, generator=generator) if generator else torch.arange(chunks)
        windows = list(torch.split(ids, self.window_chunks))
        parts, ends, end = [], [], 0
        for window in windows:
            rows = (window[:, None] * self.chunk_rows + torch.arange(self.chunk_rows)).flatten()
            rows = rows[rows < n]
            if generator is not None:
                rows = rows[torch.randperm(len(rows), generator=generator)]
            parts.append(rows)
            end += len(rows)
            ends.append(end)
        positions = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)
        return Plan(positions, windows, ends)

    def record(self) -> dict[str, Any]:
        return {"kind": "chunks" if self.shuffle else "sequential", "chunk_rows": self.chunk_rows,
                "window_chunks": self.window_chunks}
