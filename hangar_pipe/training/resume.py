"""Resume a training run where a killed one stopped: a state saved at the end of every epoch.

    ckpt = Checkpointer.for_stage(meta={"params": hp})  # HPIPE_STATE_DIR; None outside hpipe
    start, log, extra = ckpt.resume(model, optimizer, scheduler, loader, epochs, log)
    for epoch in range(start, epochs + 1):
        ...  # one epoch, then:
        ckpt.save(epoch, model, optimizer, scheduler, loader, log, extra)

The state holds what the next epoch depends on: the model's and the optimizer's (and the
scheduler's) state_dicts, the random number generators (torch's CPU one, CUDA's when CUDA is in
use, numpy's, python's `random`), the epochs done, the loader's epoch counter (a `BatchLoader`
reseeds its shuffle with seed + epoch, so that is its position), the metrics log so far and
whatever `extra` the caller keeps (early-stopping counters). Continuing from it gives the same
bytes as a run that was never stopped (on the CPU).

It is serialized when `save` is called and written on a thread of its own while the next epoch
runs (the one before is waited for; the process does not end before the last is on disk): whole
or not at all (temp file, fsync, rename), into the stage's resume folder, which hpipe keys by
the stage's run key and deletes once the stage is recorded (see core/stage_state.py). A state
saved for other settings (its `meta` fingerprint differs), or one that cannot be read, is
ignored with a note: the run starts over.

Under torch.distributed every rank calls `save` and `resume`: the ranks' generator states are
gathered (each rank gets its own back), the writer (local rank 0) writes the file, and a
resume goes on only when every rank found the same state (on several nodes each node reads its
own copy); else all start over.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.training.distributed import is_writer

FILE = "train-state.pt"
FORMAT = 1


@dataclass
class Saved:
    """A state as read back: the epochs done, the metrics log, the caller's extra, and the raw
    state dicts (`restore_into` puts them back)."""

    epoch: int
    log: dict[str, Any]
    extra: dict[str, Any]
    state: dict[str, Any] = field(repr=False)


def fingerprint(meta: dict[str, Any]) -> str:
    """What a state belongs to: its settings as canonical JSON, hashed (with the torch version)."""
    material = json.dumps({"meta": meta, "torch": torch.__version__}, sort_keys=True, default=str)
    return xxhash.xxh3_128_hexdigest(material.encode())


def _plain(model: torch.nn.Module) -> torch.nn.Module:
    """The model a DDP wrapper holds (its state_dict keys have no `module.` prefix)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(model, torch.nn.parallel.DistributedDataParallel) and inner else model


def rng_state() -> dict[str, Any]:
    """This process's generators, as tensors and plain data (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # CUDA in use: not on a CPU run
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, (0, 1) otherwise."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(value: Any) -> list[Any]:
    """Every rank's value (a list of one without torch.distributed)."""
    rank, size = _world()
    if size == 1:
        return [value]
    values: list[Any] = [None] * size
    torch.distributed.all_gather_object(values, value)
    return values


def _note(message: str) -> None:
    if _world()[0] == 0:
        print(f"{os.environ.get('HPIPE_STAGE', 'train')}: note: {message}", file=sys.stderr, flush=True)


class Checkpointer:
    """Saves and restores the resumable state of one training run in `folder` (None: never)."""

    def __init__(self, folder: Path | None, meta: dict[str, Any]) -> None:
        self.folder, self.meta = folder, meta
        self.fingerprint = fingerprint(meta)
        self._writing: threading.Thread | None = None
        self._failed: BaseException | None = None

    @classmethod
    def for_stage(cls, meta: dict[str, Any]) -> Checkpointer:
        """The stage's resume folder, as hpipe gives it (`HPIPE_STATE_DIR`); none outside hpipe."""
        folder = os.environ.get("HPIPE_STATE_DIR")
        return cls(Path(folder) if folder else None, meta)

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / FILE

    def load(self) -> Saved | None:
        """The saved state, or None: none, unreadable, of other settings, or (distributed) not
        the same on every rank. All ranks call it."""
        self.wait()
        saved = self._read()
        found = _gather(None if saved is None else (saved.epoch, saved.state["fingerprint"]))
        if len(set(found)) > 1:
            _note(f"the ranks found different resume states ({found}); starting over")
            return None
        return saved

    def _read(self) -> Saved | None:
        path = self.path
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            saved = Saved(int(state["epoch"]), state["log"], state["extra"], state)
        except Exception as exc:  # noqa: BLE001 - damaged, or another format: start over
            _note(f"cannot read the resume state {path} ({type(exc).__name__}: {exc}); starting over")
            return None
        if state.get("format") != FORMAT or state.get("fingerprint") != self.fingerprint:
            _note(f"the resume state in {path.parent} was saved for other settings; starting over")
            return None
        if len(state["rng"]) != _world()[1]:
            _note(f"the resume state in {path.parent} was saved by {len(state['rng'])} processes,"
                  f" not {_world()[1]}; starting over")
            return None
        return saved

    def save(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any = None, loader: Any = None, log: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> None:
        """Save the state after `epoch` epochs (all ranks call it; the writer writes)."""
        rngs = _gather(rng_state())
        if self.folder is None or not is_writer():
            return
        state = {"format": FORMAT, "fingerprint": self.fingerprint, "meta": self.meta, "epoch": epoch,
                 "model": _plain(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": None if scheduler is None else scheduler.state_dict(),
                 "loader_epoch": None if loader is None else int(loader.epoch),
                 "rng": rngs, "log": log or {}, "extra": extra or {}}
        buf = io.BytesIO()
        torch.save(state, buf)  # a copy of the state as it is now; training goes on meanwhile
        self.wait()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writing = threading.Thread(target=self._write, args=(self.folder / FILE, buf.getvalue()),
                                         name="hpipe-resume-save")
        self._writing.start()

    def _write(self, path: Path, data: bytes) -> None:
        try:
            _write(path, data)
        except BaseException as exc:  # noqa: BLE001 - raised on the training thread by `wait`
            self._failed = exc

    def wait(self) -> None:
        """Until the last state saved is on disk (its error, if writing it failed)."""
        if self._writing is not None:
            self._writing.join()
            self._writing = None
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def restore_into(self, saved: Saved, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any = None, loader: Any = None) -> None:
        """Put a saved state back: the model, optimizer, scheduler, loader position and this
        rank's generators."""
        state = saved.state
        _plain(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if loader is not None and state["loader_epoch"] is not None:
            loader.epoch = state["loader_epoch"]
        set_rng_state(state["rng"][_world()[0]])

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
               loader: Any, epochs: int, log: dict[str, Any], extra: dict[str, Any] | None = None
               ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """Where training starts: (1, log, extra) as given, or after a saved state, restored,
        with `resuming <stage> from epoch 7/10` printed."""
        saved = self.load()
        if saved is None:
            return 1, log, extra or {}
        self.restore_into(saved, model, optimizer, scheduler, loader)
        if _world()[0] == 0:
            stage = os.environ.get("HPIPE_STAGE", "training")
            print(f"resuming {stage} from epoch {saved.epoch + 1}/{epochs}" if saved.epoch < epochs
                  else f"resuming {stage} after epoch {saved.epoch}/{epochs}: training was done", flush=True)
        return saved.epoch + 1, saved.log, saved.extra


def _write(path: Path, data: bytes) -> None:
    """The state file whole or not at all: temp file, fsync, rename; then the folder's entry."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed save
        stale.unlink(missing_ok=True)
    atomic_write(path, data)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
