"""Built-in `uses: train`: train a classifier on Hangar columns, with hyperparameters from params.yaml.

    train:
      uses: train
      with: {images: mnist_training_images, labels: mnist_training_labels,
             val_images: mnist_validation_images, val_labels: mnist_validation_labels}
      params: [train]
      outs: [models/model.pt]
      metrics: [metrics/train.json]
      plots: [metrics/train_history.csv]

params.yaml's `train` section (`section:` in `with:` names another):
    model: {kind: mlp, layers: [auto, 500, 200, 10]}  # or {kind: cnn, channels: [16, 32]}
    optimizer: sgd        # or adam
    lr: 0.01
    momentum: 0.0
    weight_decay: 0.0
    epochs: 10
    batch_size: 32
    seed: 0
    device: auto          # cuda when present, else cpu

Before any data is read, the model is checked against the columns' schemas (training.shapes):
a mismatch is one line naming the params key. Same data commit, params and seed give
byte-identical metrics on the CPU.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hangar_pipe.core.params import load_params, params_format
from hangar_pipe.core.yamlfile import load_yaml
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.stages.common import progress, write_output
from hangar_pipe.training import distributed
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset
from hangar_pipe.training.resume import Checkpointer
from hangar_pipe.training.shapes import (
    BUILT_DEFAULTS,
    Where,
    check_classes,
    check_labels,
    check_same_shape,
    read_specs,
    resolve_model,
)

DEFAULTS: dict[str, Any] = {
    "model": {"kind": "mlp", "layers": ["auto", 500, 200, 10]}, "optimizer": "sgd", "lr": 0.01,
    "momentum": 0.0, "weight_decay": 0.0, "epochs": 10, "batch_size": 32, "seed": 0,
    "device": "auto", "distributed": None,
}


class FlatInput(nn.Sequential):
    """A Sequential that takes samples of any shape: each becomes one float32 vector first.

    A subclass rather than a Flatten layer, so that checkpoints keep their state_dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1).float())  # type: ignore[no-any-return]


def build_model(config: dict[str, Any]) -> nn.Module:
    """A model from a complete config (training.shapes.resolve_model): an MLP (`layers`: sizes
    from input to classes) or a small CNN on square images (`side`, `in_channels`). Missing sizes
    are those of models built before they were learned: 784 inputs, 28x28 images."""
    kind = config.get("kind", "mlp")
    if kind not in BUILT_DEFAULTS:
        raise UserError(f"train: unknown model kind '{kind}' (mlp or cnn)")
    full = {**BUILT_DEFAULTS[kind], **config}
    if kind == "mlp":
        sizes = [int(n) for n in full["layers"]]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return FlatInput(*layers)
    (c1, c2), side, depth = full["channels"], int(full["side"]), int(full["in_channels"])
    return FlatInput(
        nn.Unflatten(1, (depth, side, side)),
        nn.Conv2d(depth, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, int(full["classes"])))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train: device '{name}' asked for, but CUDA is not available")
    return torch.device(name)


def evaluate_batches(model: nn.Module, loader: BatchLoader) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(mean loss, predictions, targets) over a loader."""
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, preds, targets = 0.0, [], []
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            y = y.reshape(-1).long()
            out = model(x)
            total += float(loss_fn(out, y))
            preds.append(out.argmax(1).cpu())
            targets.append(y.cpu())
    return total / max(1, len(loader.dataset)), torch.cat(preds), torch.cat(targets)


def hyperparameters(params_file: str, section: str) -> tuple[dict[str, Any], Where]:
    """The section's values over the defaults, and where its model config is (for errors)."""
    doc = None
    if params_format(params_file) == "YAML":  # read with line numbers, for errors
        doc = load_yaml(Path(params_file), params_file)
        data = doc.data or {}
    else:  # JSON, TOML: as a stage's `params:` reads them
        data = load_params(Path(params_file), params_file) or {}
    if not isinstance(data, dict) or section not in data or not isinstance(data[section], dict):
        raise UserError(f"train: section '{section}' not found in {params_file}")
    unknown = set(data[section]) - set(DEFAULTS)
    if unknown:
        raise UserError(f"train: {params_file}: unknown key '{section}.{sorted(unknown)[0]}'"
                        f" (known: {', '.join(DEFAULTS)})")
    if data[section].get("optimizer", "sgd") not in ("sgd", "adam"):
        raise UserError(f"train: unknown optimizer '{data[section]['optimizer']}' (sgd or adam)")
    return {**DEFAULTS, **data[section]}, Where(params_file, (section, "model"), doc)


def checked_model(config: Any, where: Where, images: str, labels: str, val_images: str,
                  val_labels: str) -> dict[str, Any]:
    """The complete model config for these columns, from their schemas alone (no data read)."""
    repo, commit = pinned_commit()
    specs = read_specs(repo, commit, [images, labels, val_images, val_labels])
    model = resolve_model(config, specs[images], where)
    check_labels(specs[labels])
    check_same_shape(specs[images], specs[val_images])
    check_labels(specs[val_labels])
    return model


def make_optimizer(model: nn.Module, hp: dict[str, Any]) -> torch.optim.Optimizer:
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                               weight_decay=hp["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])


def check_loaded_labels(model: dict[str, Any], where: Where, *sets: tuple[str, ColumnsDataset]) -> None:
    """Every label a class of the model: the one check that needs the (loaded) labels."""
    for name, dataset in sets:
        if len(dataset):
            labels = dataset.tensors[1]
            check_classes(model, name, int(labels.min()), int(labels.max()), where)


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: BatchLoader,
        val_loader: BatchLoader, epochs: int, resume: Checkpointer | None = None) -> dict[str, list[float]]:
    """Train for `epochs` (after those a killed run saved), printing a line per epoch; the
    per-epoch losses and accuracy."""
    loss_fn = nn.CrossEntropyLoss()
    log: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    first = 1
    if resume is not None:
        first, log, _ = resume.resume(model, optimizer, None, train_loader, epochs, log)
    with progress(epochs * len(train_loader), "training") as advance:
        for epoch in range(first, epochs + 1):
            model.train()
            total, started = 0.0, time.perf_counter()
            for x, y in train_loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x), y.reshape(-1).long())
                loss.backward()
                optimizer.step()
                total += loss.item() * len(x)
                advance(1, f"epoch {epoch}")
            seconds = time.perf_counter() - started  # the training pass alone (printed, not recorded)
            val_loss, preds, targets = evaluate_batches(model, val_loader)
            log["train_loss"].append(total / len(train_loader.dataset))
            log["val_loss"].append(val_loss)
            log["val_accuracy"].append(float((preds == targets).float().mean()))
            print(f"epoch {epoch}/{epochs}: train loss {log['train_loss'][-1]:.4f}, "
                  f"val loss {val_loss:.4f}, val accuracy {log['val_accuracy'][-1]:.4f}"
                  f" ({seconds:.2f}s)", flush=True)
            if resume is not None:
                resume.save(epoch, model, optimizer, None, train_loader, log)
    return log


def run(images: str = "mnist_training_images", labels: str = "mnist_training_labels",
        val_images: str = "mnist_validation_images", val_labels: str = "mnist_validation_labels",
        section: str = "train", params_file: str = "params.yaml",
        checkpoint: str = "models/model.pt", metrics: str = "metrics/train.json",
        history: str = "metrics/train_history.csv") -> int | None:
    call = dict(locals())  # this call, for the workers of a distributed run
    hp, where = hyperparameters(params_file, section)
    config = checked_model(hp["model"], where, images, labels, val_images, val_labels)
    torch.manual_seed(int(hp["seed"]))
    device = pick_device(str(hp["device"]))
    world = distributed.start(hp["distributed"], replace(where, prefix=(section, "distributed")),
                              device.type, f"{__name__}:run", call)
    if isinstance(world, int):  # launched the workers (torchrun): their exit code
        return world
    device = torch.device(world.device) if world else device
    if device.type == "cuda":  # CPU kernels are deterministic already; the flag halves their speed
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    train_set = ColumnsDataset([images, labels])
    val_set = ColumnsDataset([val_images, val_labels], repo=train_set.repo, commit=train_set.commit)
    check_loaded_labels(config, where, (labels, train_set), (val_labels, val_set))
    train_loader = BatchLoader(train_set, int(hp["batch_size"]), shuffle=True, seed=int(hp["seed"]),
                               device=device)
    val_loader = BatchLoader(val_set, 1024, device=device)
    model = build_model(config).to(device)
    epochs = int(hp["epochs"])
    provenance = {"repo": str(train_set.repo), "commit": train_set.commit,
                  "columns": {**train_set.fingerprints, **val_set.fingerprints}}
    resume = Checkpointer.for_stage({"params": hp, "model": config, "columns": provenance["columns"]})
    log = fit(distributed.wrap(model, world) if world else model, make_optimizer(model, hp),
              train_loader, val_loader, epochs, resume)
    if world is not None:
        distributed.cleanup()
        if not world.is_writer:  # local rank 0 writes the outputs
            return None
    buf = io.BytesIO()
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "model": config, "params": hp, "data": provenance,
                "distributed": world.record() if world else None,
                "torch_version": torch.__version__, "stage": os.environ.get("HPIPE_STAGE")}, buf)
    write_output(checkpoint, buf.getvalue())
    final = {k: v[-1] for k, v in log.items()}
    write_output(metrics, json.dumps({**final, "epochs": epochs, "data_commit": train_set.commit,
                                "history": log}, indent=2).encode())
    rows = [f"{e},{a!r},{b!r},{c!r}\n" for e, (a, b, c) in
            enumerate(zip(log["train_loss"], log["val_loss"], log["val_accuracy"]), start=1)]
    write_output(history, ("epoch,train_loss,val_loss,val_accuracy\n" + "".join(rows)).encode())
    return None
