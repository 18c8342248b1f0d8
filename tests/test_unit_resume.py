"""The resumable training state in-process: a run stopped after some epochs and resumed by new
objects (as a new process would) ends byte-identical to a run that was never stopped, dropout and
every random generator included; a state of other settings, or a damaged one, is ignored with a
note."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from hangar_pipe.training.loader import BatchLoader, TensorColumns
from hangar_pipe.training.resume import FILE, Checkpointer

EPOCHS = 4
META = {"params": {"lr": 0.01, "epochs": EPOCHS}, "columns": {"x": "abc"}}


def toy() -> TensorColumns:
    g = torch.Generator().manual_seed(1)
    return TensorColumns(torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g))


def train(folder: Path, stop_after: int, dropout: float, scheduler: str) -> tuple[bytes, Any, Any]:
    """A plain loop with the checkpointer around it, fresh objects every call (a new process);
    it trains up to `stop_after` epochs and returns (model bytes, log, extra)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    sched: Any = (torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.7) if scheduler == "step" else
                  torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=EPOCHS * 5))
    loader = BatchLoader(toy(), 8, shuffle=True, seed=3)
    ckpt = Checkpointer(folder, META)
    first, log, extra = ckpt.resume(model, optimizer, sched, loader, EPOCHS, {"loss": []}, {"best": None})
    for epoch in range(first, stop_after + 1):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            noise = float(np.random.normal()) * 1e-3 + random.random() * 1e-3  # numpy's and python's
            loss = nn.functional.cross_entropy(model(x), y) + noise
            loss.backward()
            optimizer.step()
            if scheduler == "onecycle":
                sched.step()
        if scheduler == "step":
            sched.step()
        log["loss"].append(loss.item())
        extra["best"] = min(extra["best"] or float("inf"), loss.item())
        ckpt.save(epoch, model, optimizer, sched, loader, log, extra)
    ckpt.wait()  # on disk (a process's end waits for it too)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue(), log, extra


@pytest.mark.parametrize(("dropout", "scheduler"), [(0.0, "step"), (0.5, "onecycle")])
def test_stopped_and_resumed_equals_straight(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             dropout: float, scheduler: str) -> None:
    straight = train(tmp_path / "a", EPOCHS, dropout, scheduler)
    train(tmp_path / "b", 2, dropout, scheduler)
    torch.manual_seed(99)  # the new process's generators are anything: the state sets them
    capsys.readouterr()
    resumed = train(tmp_path / "b", EPOCHS, dropout, scheduler)
    assert "resuming training from epoch 3/4" in capsys.readouterr().out
    assert resumed == straight and len(straight[1]["loss"]) == EPOCHS
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [FILE], "no temp file is left"
    if dropout:  # the generators matter: a run that does not restore them differs
        (tmp_path / "c").mkdir()
        train(tmp_path / "c", 2, dropout, scheduler)
        state = torch.load(tmp_path / "c" / FILE, weights_only=True)
        state["rng"][0]["torch"] = torch.manual_seed(5).get_state()
        torch.save(state, tmp_path / "c" / FILE)
        assert train(tmp_path / "c", EPOCHS, dropout, scheduler)[0] != straight[0]


def test_a_state_of_other_settings_or_damaged_is_ignored_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPIPE_STAGE", "fit")
    straight = train(tmp_path / "a", EPOCHS, 0.0, "step")
    train(tmp_path / "b", 2, 0.0, "step")
    model = nn.Linear(2, 2)
    other = Checkpointer(tmp_path / "b", {**META, "params": {"lr": 0.02, "epochs": EPOCHS}})
    assert other.load() is None
    assert f"fit: note: the resume state in {tmp_path / 'b'} was saved for other settings;" \
           " starting over" in capsys.readouterr().err
    assert Checkpointer(tmp_path / "b", META).load() is not None
    (tmp_path / "b" / FILE).write_bytes(b"not a torch file")
    assert Checkpointer(tmp_path / "b", META).resume(model, torch.optim.SGD(model.parameters()), None,
                                                     None, EPOCHS, {"loss": []})[0] == 1
    assert "fit: note: cannot read the resume state" in capsys.readouterr().err
    assert train(tmp_path / "b", EPOCHS, 0.0, "step") == straight, "started over, same result"
    assert Checkpointer(None, META).load() is None  # outside hpipe: nothing to resume
    Checkpointer(None, META).save(1, model, torch.optim.SGD(model.parameters()))


def test_a_finished_run_resumes_to_its_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed after its last epoch's save, before it wrote its outputs: nothing left to train."""
    straight = train(tmp_path / "a", EPOCHS, 0.5, "step")
    capsys.readouterr()
    assert train(tmp_path / "a", EPOCHS, 0.5, "step") == straight
    assert "resuming training after epoch 4/4: training was done" in capsys.readouterr().out
