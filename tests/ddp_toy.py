"""A toy training script on hangar_pipe.training.distributed, for tests/test_distributed.py.

`python ddp_toy.py '{"out": "model.pt", "nproc": 2}'` launches itself under torchrun (gloo, CPU)
and trains a tiny regression model with global batches of 16 samples split across the ranks;
the writer saves the state_dict to `out`. `resume` names a folder for the resumable state;
`fail_rank` makes that rank fail with bad input when epoch `fail_epoch` begins.
`train(1, 0)` is the same training in one process, without torch.distributed.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hangar_pipe.errors import UserError
from hangar_pipe.training import distributed
from hangar_pipe.training.resume import Checkpointer

GLOBAL_BATCH = 16


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    return x, (x[:, :4].sum(1, keepdim=True) - x[:, 4:].sum(1, keepdim=True)).tanh()


def train(size: int, rank: int, world: distributed.World | None = None, epochs: int = 4,
          dropout: float = 0.0, resume: Checkpointer | None = None, fail: tuple[int, int] = (-1, 0)
          ) -> nn.Module:
    """Each rank takes every size-th sample of each global batch; DDP averages the gradients.
    With `resume`, a state is saved after every epoch and a saved one is resumed; rank
    fail[0] fails with bad input when epoch fail[1] begins."""
    torch.manual_seed(0)
    model: nn.Module = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 1))
    if world is not None:
        model = distributed.wrap(model, world)
    torch.manual_seed(100 + rank)  # each rank draws its own dropout masks
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first, log = 1, {"loss": []}
    if resume is not None:
        first, log, _ = resume.resume(model, optimizer, None, None, epochs, log)
    x, y = data()
    for epoch in range(first, epochs + 1):
        if (rank, epoch) == fail:
            raise UserError(f"rank {rank} refuses to train epoch {epoch}")
        for start in range(0, len(x), GLOBAL_BATCH):
            xb, yb = x[start:start + GLOBAL_BATCH][rank::size], y[start:start + GLOBAL_BATCH][rank::size]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
        log["loss"].append(loss.item())
        if resume is not None:
            resume.save(epoch, model, optimizer, None, None, log)
    return model


def state_bytes(model: nn.Module) -> bytes:
    inner = getattr(model, "module", model)
    buf = io.BytesIO()
    torch.save(inner.state_dict(), buf)
    return buf.getvalue()


def run(out: str, nproc: int = 2, nnodes: int = 1, endpoint: str | None = None, dropout: float = 0.0,
        resume: str | None = None, fail_rank: int = -1, fail_epoch: int = 1) -> int:
    found = distributed.Settings(nproc_per_node=nproc, nnodes=nnodes, rdzv_endpoint=endpoint)
    if not distributed.in_worker():
        return distributed.launch(found, "ddp_toy:run", {
            "out": out, "nproc": nproc, "nnodes": nnodes, "endpoint": endpoint, "dropout": dropout,
            "resume": resume, "fail_rank": fail_rank, "fail_epoch": fail_epoch})
    world = distributed.init("gloo")
    assert distributed.world() == world
    try:
        ckpt = Checkpointer(Path(resume), {"dropout": dropout}) if resume else None
        model = train(world.size, world.rank, world, dropout=dropout, resume=ckpt, fail=(fail_rank, fail_epoch))
        if world.is_writer:
            Path(out).write_bytes(state_bytes(model))
            Path(out).with_suffix(".json").write_text(json.dumps(world.record()))
        distributed.cleanup(together=True)
    finally:
        distributed.cleanup()  # (after a failure: no barrier)
    return 0


def main(argv: list[str]) -> int:
    kwargs: dict[str, Any] = json.loads(argv[0])
    return run(**kwargs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
