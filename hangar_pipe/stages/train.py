"""Built-in `uses: train`: train a model on Hangar columns, with hyperparameters from params.yaml.

    train:
      uses: train
      with: {images: mnist_training_images, labels: mnist_training_labels,
             val_images: mnist_validation_images, val_labels: mnist_validation_labels}
      params: [train]
      outs: [models/model.pt]
      metrics: [metrics/train.json]
      plots: [metrics/train_history.csv]

params.yaml's `train` section (`section:` in `with:` names another); every key is in
docs/training.md and checked by training.hyperparams:
    model: {kind: mlp, layers: [auto, 500, 200, 10]}  # {kind: cnn}, or {module: "pkg.models:Net"}
    task: classification  # or regression (float targets of any shape, MSE loss)
    optimizer: sgd        # adam, adamw, or {kind: adam, betas: [0.9, 0.999], ...}
    lr: 0.01
    scheduler: null       # {kind: step | cosine | onecycle, ...}
    epochs: 10
    batch_size: 32
    seed: 0
    device: auto          # cuda when present, else cpu
    ...

Before any data is read, the model is checked against the columns' schemas (training.shapes):
a mismatch is one line naming the params key. Same data commit, params and seed give
byte-identical outputs on the CPU.

The loop is `fit`: one `run_epoch` after another over a `TrainState` (everything an epoch
changes), with an `on_epoch_end` hook.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hangar_pipe.core.sizes import format_size
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.stages.common import progress, write_output
from hangar_pipe.training import distributed
from hangar_pipe.training.custom_model import custom_config, custom_outputs, is_custom
from hangar_pipe.training.device import Loader, dataset_bytes, fits_on, loader_on, pick_device
from hangar_pipe.training.early_stopping import Stopper
from hangar_pipe.training.hyperparams import METRICS, Hyperparams, hyperparameters
from hangar_pipe.training.loader import ColumnsDataset
from hangar_pipe.training.models import FlatInput, build_model, make_model
from hangar_pipe.training.optim import Schedule, make_optimizer, make_schedule
from hangar_pipe.training.precision import Precision
from hangar_pipe.training.resume import Checkpointer
from hangar_pipe.training.shapes import (
    ColumnSpec,
    Outputs,
    Where,
    check_classes,
    check_labels,
    check_same_shape,
    check_target_size,
    check_targets,
    model_outputs,
    read_specs,
    resolve_model,
)
from hangar_pipe.training.tasks import CLASSIFICATION, batch_loss, score, targets
from hangar_pipe.training.threads import use_threads

__all__ = ["FlatInput", "Plan", "TrainState", "build_model", "fit", "pick_device", "run", "start"]


@dataclass
class Plan:
    """What stays the same from epoch to epoch: the loop's settings."""

    epochs: int
    task: str = CLASSIFICATION
    val_every: int = 1
    grad_clip: float | None = None
    precision: Precision = field(default_factory=Precision)
    where: Where | None = None  # the params section, for the non-finite-loss error
    columns: tuple[str, str] = ("images", "labels")

    @classmethod
    def of(cls, hp: Hyperparams, precision: Precision | None = None, where: Where | None = None,
           columns: tuple[str, str] = ("images", "labels")) -> Plan:
        return cls(hp.epochs, hp.task, hp.val_every, hp.grad_clip, precision or Precision(), where, columns)

    def validates(self, epoch: int) -> bool:
        """Every `val_every` epochs, and always the last."""
        return epoch % self.val_every == 0 or epoch == self.epochs


@dataclass
class TrainState:
    """Everything an epoch changes: what a resumed run restores, and a DDP wrapper wraps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None = None
    stopper: Stopper | None = None
    log: dict[str, list[float | None]] = field(default_factory=dict)
    epoch: int = 0  # epochs completed
    stopped: str | None = None  # why training stopped before its last epoch


def new_log(task: str, scheduled: bool) -> dict[str, list[float | None]]:
    """The per-epoch lists: train loss, the validation metrics of the task, the lr if scheduled."""
    return {k: [] for k in ["train_loss", *METRICS[task], *(["lr"] if scheduled else [])]}


def start(hp: Hyperparams, model: nn.Module, batches: int) -> TrainState:
    """The state before the first epoch: optimizer and schedule over the model (on its device),
    early stopping, an empty log; `batches`: per epoch (for onecycle)."""
    optimizer = make_optimizer(model, hp)
    schedule = make_schedule(optimizer, hp, batches)
    stopper = Stopper(hp.early_stopping) if hp.early_stopping else None
    return TrainState(model, optimizer, schedule, stopper, new_log(hp.task, schedule is not None))


def train_epoch(state: TrainState, plan: Plan, epoch: int, loader: Loader,
                advance: Callable[[int, str | None], None]) -> float:
    """One pass over the training batches; the mean training loss."""
    model, optimizer, loss_fn = state.model, state.optimizer, batch_loss(plan.task)
    model.train()
    total = 0.0
    for batch, (x, y) in enumerate(loader, start=1):
        optimizer.zero_grad()
        with plan.precision.autocast():
            loss = loss_fn(model(x.float()), targets(plan.task, y))
        plan.precision.step(loss, optimizer, model, plan.grad_clip)
        value = loss.item()
        if not math.isfinite(value):
            raise non_finite(plan, value, epoch, batch, len(loader), x, y)
        if state.schedule is not None:
            state.schedule.after_batch()
        total += value * len(x)
        advance(1, f"epoch {epoch}")
    return distributed.sum_over_ranks(total) / len(loader.dataset)  # (each rank saw its share)


def non_finite(plan: Plan, value: float, epoch: int, batch: int, batches: int, x: torch.Tensor,
               y: torch.Tensor) -> UserError:
    """The one line for a nan or infinite loss: the data's fault when the batch holds one."""
    at = f"the loss is {value} at epoch {epoch}, batch {batch} of {batches}"
    for name, data in zip(plan.columns, (x, y)):
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            return UserError(f"train: {at}: column {name} holds nan or infinite values in that batch")
    advice = "lower lr, set grad_clip, or check the columns' values"
    return plan.where.at(("lr",), f"{at}; {advice}") if plan.where else UserError(f"train: {at}; {advice}")


def run_epoch(state: TrainState, plan: Plan, epoch: int, train_loader: Loader, val_loader: Loader,
              advance: Callable[[int, str | None], None]) -> None:
    """Train one epoch, validate when due, step the schedule and early stopping, log a line."""
    log = state.log
    if "lr" in log:
        log["lr"].append(state.optimizer.param_groups[0]["lr"])
    started = time.perf_counter()
    log["train_loss"].append(train_epoch(state, plan, epoch, train_loader, advance))
    seconds = time.perf_counter() - started  # the training pass alone (printed, not recorded)
    line = f"epoch {epoch}/{plan.epochs}: train loss {log['train_loss'][-1]:.4f}"
    validated = plan.validates(epoch)
    metrics = score(state.model, val_loader, plan.task, plan.precision).metrics() if validated else {}
    for name, value in metrics.items():
        log[f"val_{name}"].append(value)
        line += f", val {name} {value:.4f}"
    for name in log:
        if name.startswith("val_") and not validated:
            log[name].append(None)
    if state.schedule is not None:
        state.schedule.after_epoch()
    if state.stopper is not None and validated:
        watched = metrics[state.stopper.options.metric.removeprefix("val_")]
        if state.stopper.update(epoch, watched) and epoch < plan.epochs:
            state.stopped = state.stopper.reason()
    state.epoch = epoch
    print(f"{line} ({seconds:.2f}s)", flush=True)


def fit(state: TrainState, plan: Plan, train_loader: Loader, val_loader: Loader,
        on_epoch_end: Callable[[TrainState], None] | None = None) -> TrainState:
    """Train from the epoch after `state.epoch` to the plan's last, or until early stopping."""
    with progress((plan.epochs - state.epoch) * len(train_loader), "training") as advance:
        for epoch in range(state.epoch + 1, plan.epochs + 1):
            run_epoch(state, plan, epoch, train_loader, val_loader, advance)
            if on_epoch_end is not None:
                on_epoch_end(state)
            if state.stopped:
                print(f"early stopping after epoch {epoch}/{plan.epochs}: {state.stopped}", flush=True)
                break
    return state


@dataclass
class Columns:
    """The stage's four columns and their schemas."""

    images: str
    labels: str
    val_images: str
    val_labels: str
    specs: dict[str, ColumnSpec] = field(default_factory=dict)

    def read_specs(self) -> Columns:
        repo, commit = pinned_commit()
        names = [self.images, self.labels, self.val_images, self.val_labels]
        self.specs = read_specs(repo, commit, names)
        return self

    def budgets(self, budget: int) -> tuple[int, int]:
        """The memory budget of the training set and of the validation set: all of it to each when
        both fit together, else shared in proportion to their sizes (each larger one streamed)."""
        sizes = [self.specs[self.images].nbytes + self.specs[self.labels].nbytes,
                 self.specs[self.val_images].nbytes + self.specs[self.val_labels].nbytes]
        if sum(sizes) <= budget:
            return budget, budget
        return budget * sizes[0] // sum(sizes), budget * sizes[1] // sum(sizes)


def checked_config(config: Any, where: Where, cols: Columns) -> dict[str, Any]:
    """The model config: a built-in one completed from the image column's schema, or your own."""
    if is_custom(config):
        return custom_config(config, where)
    return resolve_model(config, cols.specs[cols.images], where)


def check_columns(task: str, outputs: Outputs, cols: Columns, where: Where) -> None:
    """Labels (classification) or targets (regression) against the model, from the schemas."""
    specs = cols.specs
    if task == CLASSIFICATION:
        check_labels(specs[cols.labels])
        check_same_shape(specs[cols.images], specs[cols.val_images])
        check_labels(specs[cols.val_labels])
        return
    check_same_shape(specs[cols.images], specs[cols.val_images])
    check_targets(specs[cols.labels])
    check_same_shape(specs[cols.labels], specs[cols.val_labels])
    check_target_size(outputs, specs[cols.labels], where)


def checked_model(hp: Hyperparams, config: dict[str, Any], cols: Columns, where: Where
                  ) -> tuple[nn.Module, Outputs]:
    """The model built (torch's RNG seeded first) and checked against the columns' schemas."""
    model = make_model(config, where)
    if is_custom(config):
        outputs = custom_outputs(model, config, cols.specs[cols.images], where,
                                 classifier=hp.task == CLASSIFICATION)
    else:
        outputs = model_outputs(config)
    check_columns(hp.task, outputs, cols, where)
    return model, outputs


def check_loaded_labels(outputs: Outputs, where: Where, *sets: tuple[str, ColumnsDataset]) -> None:
    """Every label a class of the model: the one check that needs the (loaded) labels."""
    for name, dataset in sets:
        if len(dataset):
            labels = dataset.column(1)
            check_classes(outputs, name, int(labels.min()), int(labels.max()), where)


def training_device(hp: Hyperparams, section: Where) -> tuple[torch.device, Precision]:
    """The device (`train.device` named in its errors) and the precision on it."""
    try:
        device = pick_device(hp.device)
    except UserError as exc:
        raise section.at(("device",), exc.message) from None
    if device.type == "cuda":  # CPU kernels are deterministic already; the flag halves their speed
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif hp.amp:
        print(f"train: amp applies on CUDA only; this {device.type} run trains in float32", flush=True)
    return device, Precision.on(device, hp.amp)


def run(images: str = "mnist_training_images", labels: str = "mnist_training_labels",
        val_images: str = "mnist_validation_images", val_labels: str = "mnist_validation_labels",
        section: str = "train", params_file: str = "params.yaml",
        checkpoint: str = "models/model.pt", metrics: str = "metrics/train.json",
        history: str = "metrics/train_history.csv") -> int | None:
    call = dict(locals())  # this call, for the workers of a distributed run
    use_threads()
    hp, where = hyperparameters(params_file, section)
    model_where = Where(where.file, where.prefix + ("model",), where.doc)
    cols = Columns(images, labels, val_images, val_labels).read_specs()
    config = checked_config(hp.model, model_where, cols)
    torch.manual_seed(hp.seed)
    device, precision = training_device(hp, where)
    world = distributed.start(hp.distributed, Where(where.file, where.prefix + ("distributed",), where.doc),
                              device.type, f"{__name__}:run", call)
    if isinstance(world, int):  # this process launched the workers (torchrun): their exit code
        return world
    device = torch.device(world.device) if world else device
    model, outputs = checked_model(hp, config, cols, model_where)
    train_budget, val_budget = cols.budgets(hp.memory_budget)
    train_set = ColumnsDataset([images, labels], memory_budget=train_budget)
    val_set = ColumnsDataset([val_images, val_labels], repo=train_set.repo, commit=train_set.commit,
                             memory_budget=val_budget)
    if train_set.streamed and (world is None or world.is_writer):
        print(f"train: {images}, {labels}: {format_size(train_set.nbytes)} is over the memory budget"
              f" ({format_size(train_budget)}): streamed, {train_set.chunking.window_size} samples a window",
              flush=True)
    if hp.task == CLASSIFICATION:
        check_loaded_labels(outputs, model_where, (labels, train_set), (val_labels, val_set))
    whole = device.type == "cuda" and fits_on(device, dataset_bytes(train_set, val_set))
    train_loader = loader_on(device, train_set, hp.batch_size, whole=whole, shuffle=True, seed=hp.seed,
                             shard=(world.rank, world.size) if world else None)
    val_loader = loader_on(device, val_set, 1024, whole=whole)
    provenance = {"repo": str(train_set.repo), "commit": train_set.commit,
                  "columns": {**train_set.fingerprints, **val_set.fingerprints}}
    state = start(hp, model.to(device), len(train_loader))
    resume = Checkpointer.for_stage({"params": hp.record(), "model": config, "columns": provenance["columns"]})
    resumed(resume, state, train_loader, hp.epochs)
    if world is not None:
        state.model = distributed.wrap(state.model, world)
    fit(state, Plan.of(hp, precision, where, (images, labels)), train_loader, val_loader,
        lambda s: resume.save(s.epoch, s.model, s.optimizer, s.schedule and s.schedule.scheduler,
                              train_loader, s.log, {"stopper": s.stopper and s.stopper.state_dict(),
                                                    "stopped": s.stopped}))
    resume.wait()
    if world is not None:
        distributed.cleanup(together=True)
        state.model = distributed.unwrap(state.model)
        if not world.is_writer:  # local rank 0 writes the outputs
            return None
    summary = {"epochs": state.epoch, "stop_reason": "early_stopping" if state.stopped else "completed",
               **({"best_epoch": state.stopper.best_epoch} if state.stopper else {}),
               "device": device.type, "precision": precision.name, "threads": torch.get_num_threads(),
               "distributed": world.record() if world else None, "loader": train_loader.record()}
    write_results(state, {**hp.record(), "model": config}, summary, provenance,
                  (checkpoint, metrics, history))
    return None


def resumed(resume: Checkpointer, state: TrainState, loader: Loader, epochs: int) -> None:
    """Put back what a killed run saved after its last whole epoch (if anything, for these
    settings): model, optimizer, schedule, early stopping, log, loader position, generators."""
    first, log, extra = resume.resume(state.model, state.optimizer, state.schedule and state.schedule.scheduler,
                                      loader, epochs, state.log)
    state.epoch, state.log = first - 1, log
    if extra.get("stopper") and state.stopper is not None:
        state.stopper.load_state_dict(extra["stopper"])
    state.stopped = extra.get("stopped")


def write_results(state: TrainState, settings: dict[str, Any], summary: dict[str, Any],
                  provenance: dict[str, Any], paths: tuple[str, str, str]) -> None:
    """The checkpoint, the metrics file and the per-epoch history CSV."""
    checkpoint, metrics, history = paths
    buf = io.BytesIO()
    torch.save({"state_dict": {k: v.cpu() for k, v in state.model.state_dict().items()},
                "model": settings["model"], "task": settings["task"], "params": settings,
                "training": summary, "data": provenance, "torch_version": torch.__version__,
                "stage": os.environ.get("HPIPE_STAGE")}, buf)
    write_output(checkpoint, buf.getvalue())
    log = state.log
    final = {k: v[-1] for k, v in log.items() if k != "lr"}
    write_output(metrics, json.dumps({**final, "epochs": summary["epochs"], "data_commit": provenance["commit"],
                                      **{k: v for k, v in summary.items() if k != "epochs"},
                                      "hyperparameters": settings, "history": log}, indent=2).encode())
    rows = [f"{epoch}," + ",".join("" if v is None else repr(v) for v in values) + "\n"
            for epoch, values in enumerate(zip(*log.values()), start=1)]
    write_output(history, ("epoch," + ",".join(log) + "\n" + "".join(rows)).encode())
