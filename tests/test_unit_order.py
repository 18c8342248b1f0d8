"""The loader's orders and the streaming sizes, in-process: pure functions of (n, seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from hangar_pipe.core.sizes import format_size, parse_size
from hangar_pipe.training.order import ChunkShuffle, FullShuffle, Sequential
from hangar_pipe.training.streaming import CHUNK_BYTES, HELD, MIN_CHUNKS, Chunking


@pytest.mark.parametrize(("n", "chunk", "window"), [(100, 7, 3), (64, 8, 2), (5, 10, 1), (1000, 1, 1000), (33, 4, 100)])
def test_a_chunk_shuffle_is_a_permutation_in_whole_chunks_by_window(n: int, chunk: int, window: int) -> None:
    order = ChunkShuffle(chunk, window)
    plan = order.plan(n, seed=3, epoch=1)
    assert plan.positions is not None and plan.windows is not None and plan.ends is not None
    assert sorted(plan.positions.tolist()) == list(range(n))
    assert plan.ends[-1] == n and plan.ends == sorted(plan.ends) and len(plan.ends) == len(plan.windows)
    start = 0
    for ids, end in zip(plan.windows, plan.ends):
        assert len(ids) <= window
        rows = plan.positions[start:end]
        assert set((rows // chunk).tolist()) == set(ids.tolist())  # a window holds its chunks, whole
        assert len(rows) == sum(min(chunk, n - int(k) * chunk) for k in ids)
        start = end
    again = order.plan(n, seed=3, epoch=1).positions
    assert again is not None and torch.equal(plan.positions, again)  # a run repeats


def test_chunk_shuffles_differ_by_epoch_and_seed_and_sequential_is_in_order() -> None:
    order = ChunkShuffle(10, 4)
    a, b, c = (order.plan(200, seed, epoch).positions for seed, epoch in ((0, 0), (0, 1), (1, 0)))
    assert a is not None and b is not None and c is not None
    assert not torch.equal(a, b) and not torch.equal(a, c) and torch.equal(b, c)  # seed + epoch
    in_order = ChunkShuffle(10, 4, shuffle=False).plan(95, 0, 0)
    assert in_order.positions is not None and in_order.positions.tolist() == list(range(95))
    assert in_order.ends == [40, 80, 95]
    assert Sequential().plan(95, 0, 0).positions is None


def test_the_full_shuffle_is_randperm_seeded_with_seed_plus_epoch() -> None:
    """The in-memory loader's order since the first release: the same bytes as before."""
    got = FullShuffle().plan(50, seed=7, epoch=2).positions
    assert got is not None and torch.equal(got, torch.randperm(50, generator=torch.Generator().manual_seed(9)))


@pytest.mark.parametrize(("row", "budget"), [(792, 4 * 2**30), (792, 10**6), (200, 20_000), (3072 * 4, 3 * 10**6),
                                             (10**7, 10**6), (1, 10)])
def test_chunking_keeps_three_windows_within_the_budget(row: int, budget: int) -> None:
    c = Chunking.for_budget(row, budget)
    window = c.chunk_rows * c.window_chunks
    assert c.chunk_rows >= 1 and c.window_chunks >= 1
    if row * HELD <= budget:  # else one sample per window is the least there is
        assert HELD * window * row <= budget
    assert c.chunk_rows * row <= max(CHUNK_BYTES, row)
    if budget // HELD // row >= MIN_CHUNKS:
        assert c.window_chunks >= MIN_CHUNKS


@pytest.mark.parametrize(("text", "size"), [(1024, 1024), ("512MB", 512 * 10**6), ("4GiB", 4 * 2**30),
                                            ("1.5 GB", 1_500_000_000), ("40kB", 40_000), ("7", 7), ("2e3 KiB", 2_048_000)])
def test_sizes_as_people_write_them(text: int | str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1GB", "4 GiBs", True, -5, None, float("inf"), ""])
def test_what_is_not_a_size(bad: object) -> None:
    assert parse_size(bad) is None


def test_sizes_for_messages() -> None:
    assert (format_size(512), format_size(1536), format_size(5 * 2**30)) == ("512 B", "1.5 KiB", "5.0 GiB")
