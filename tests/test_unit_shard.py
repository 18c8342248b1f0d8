"""BatchLoader's rank sharding in-process: the ranks together see one epoch exactly, each global
batch keeps its size, and every rank takes the same number of steps."""

from __future__ import annotations

import pytest
import torch

from hangar_pipe.training.loader import BatchLoader, TensorColumns
from hangar_pipe.training.order import ChunkShuffle, Order


def columns(n: int) -> TensorColumns:
    return TensorColumns(torch.arange(n * 2).reshape(n, 2), torch.arange(n))


@pytest.mark.parametrize("shuffle", [True, ChunkShuffle(7, 3)], ids=["full", "chunks"])
@pytest.mark.parametrize(("n", "batch", "world"), [(100, 32, 2), (97, 10, 3), (64, 16, 4), (33, 32, 2)])
def test_ranks_share_each_epoch_without_gaps_or_doubles(n: int, batch: int, world: int, shuffle: bool | Order
                                                        ) -> None:
    data = columns(n)
    single = BatchLoader(data, batch, shuffle=shuffle, seed=5)
    ranks = [BatchLoader(data, batch, shuffle=shuffle, seed=5, shard=(r, world))
             for r in range(world)]
    for _ in range(2):  # two epochs: each reshuffled the same way on every rank
        whole = [y for _, y in single]
        parts = [[y for _, y in loader] for loader in ranks]
        assert len({len(p) for p in parts}) == 1  # every rank takes every step
        for step, batch_y in enumerate(whole):
            joined = torch.cat([p[step] for p in parts]) if step < len(parts[0]) else None
            if joined is None:  # a last global batch smaller than the ranks: left out
                assert len(batch_y) < world
                continue
            assert torch.equal(joined, batch_y)  # the global batch, in order, split by rank
            assert max(len(p[step]) for p in parts) - min(len(p[step]) for p in parts) <= 1


def test_a_bad_shard_is_refused() -> None:
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(columns(4), 2, shard=(2, 2))
