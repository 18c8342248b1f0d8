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
    model: {kind: mlp, layers: [784, 500, 200, 10]}   # or {kind: cnn, channels: [16, 32]}
    optimizer: sgd        # or adam
    lr: 0.01
    momentum: 0.0
    weight_decay: 0.0
    epochs: 10
    batch_size: 32
    seed: 0
    device: auto          # cuda when present, else cpu

Same data commit, params and seed give byte-identical metrics on the CPU.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hangar_pipe.core.yamlfile import load_data
from hangar_pipe.errors import UserError
from hangar_pipe.stages.common import progress, write_output
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset

DEFAULTS: dict[str, Any] = {
    "model": {"kind": "mlp", "layers": [784, 500, 200, 10]}, "optimizer": "sgd", "lr": 0.01,
    "momentum": 0.0, "weight_decay": 0.0, "epochs": 10, "batch_size": 32, "seed": 0,
    "device": "auto",
}


def build_model(config: dict[str, Any]) -> nn.Module:
    """An MLP (`layers`: sizes from input to classes) or a small CNN on 28x28 images."""
    kind = config.get("kind", "mlp")
    if kind == "mlp":
        sizes = list(config.get("layers", DEFAULTS["model"]["layers"]))
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    if kind == "cnn":
        c1, c2 = config.get("channels", [16, 32])
        side = int(config.get("side", 28))
        return nn.Sequential(
            nn.Unflatten(1, (1, side, side)),
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, int(config.get("classes", 10))))
    raise UserError(f"train: unknown model kind '{kind}' (mlp or cnn)")


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
            y = y.reshape(-1)
            out = model(x)
            total += float(loss_fn(out, y))
            preds.append(out.argmax(1).cpu())
            targets.append(y.cpu())
    return total / max(1, len(loader.dataset)), torch.cat(preds), torch.cat(targets)


def hyperparameters(params_file: str, section: str) -> dict[str, Any]:
    data = load_data(Path(params_file), params_file) or {}
    if section not in data or not isinstance(data[section], dict):
        raise UserError(f"train: section '{section}' not found in {params_file}")
    unknown = set(data[section]) - set(DEFAULTS)
    if unknown:
        raise UserError(f"train: {params_file}: unknown key '{section}.{sorted(unknown)[0]}'"
                        f" (known: {', '.join(DEFAULTS)})")
    return {**DEFAULTS, **data[section]}


def run(images: str = "mnist_training_images", labels: str = "mnist_training_labels",
        val_images: str = "mnist_validation_images", val_labels: str = "mnist_validation_labels",
        section: str = "train", params_file: str = "params.yaml",
        checkpoint: str = "models/model.pt", metrics: str = "metrics/train.json",
        history: str = "metrics/train_history.csv") -> None:
    hp = hyperparameters(params_file, section)
    torch.manual_seed(int(hp["seed"]))
    device = pick_device(str(hp["device"]))
    if device.type == "cuda":  # CPU kernels are deterministic already; the flag halves their speed
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    train_set = ColumnsDataset([images, labels])
    val_set = ColumnsDataset([val_images, val_labels], repo=train_set.repo, commit=train_set.commit)
    train_loader = BatchLoader(train_set, int(hp["batch_size"]), shuffle=True, seed=int(hp["seed"]),
                               device=device)
    val_loader = BatchLoader(val_set, 1024, device=device)
    model = build_model(hp["model"]).to(device)
    if hp["optimizer"] == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    elif hp["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    else:
        raise UserError(f"train: unknown optimizer '{hp['optimizer']}' (sgd or adam)")
    loss_fn = nn.CrossEntropyLoss()
    log: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    epochs = int(hp["epochs"])
    with progress(epochs * len(train_loader), "training") as advance:
        for epoch in range(1, epochs + 1):
            model.train()
            total, started = 0.0, time.perf_counter()
            for x, y in train_loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x), y.reshape(-1))
                loss.backward()
                optimizer.step()
                total += loss.item() * len(x)
                advance(1, f"epoch {epoch}")
            seconds = time.perf_counter() - started  # the training pass alone (printed, not recorded)
            val_loss, preds, targets = evaluate_batches(model, val_loader)
            log["train_loss"].append(total / len(train_set))
            log["val_loss"].append(val_loss)
            log["val_accuracy"].append(float((preds == targets).float().mean()))
            print(f"epoch {epoch}/{epochs}: train loss {log['train_loss'][-1]:.4f}, "
                  f"val loss {val_loss:.4f}, val accuracy {log['val_accuracy'][-1]:.4f}"
                  f" ({seconds:.2f}s)", flush=True)
    provenance = {"repo": str(train_set.repo), "commit": train_set.commit,
                  "columns": {**train_set.fingerprints, **val_set.fingerprints}}
    buf = io.BytesIO()
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "model": hp["model"], "params": hp, "data": provenance,
                "torch_version": torch.__version__, "stage": os.environ.get("HPIPE_STAGE")}, buf)
    write_output(checkpoint, buf.getvalue())
    final = {k: v[-1] for k, v in log.items()}
    write_output(metrics, json.dumps({**final, "epochs": epochs, "data_commit": train_set.commit,
                                "history": log}, indent=2).encode())
    rows = [f"{e},{a!r},{b!r},{c!r}\n" for e, (a, b, c) in
            enumerate(zip(log["train_loss"], log["val_loss"], log["val_accuracy"]), start=1)]
    write_output(history, ("epoch,train_loss,val_loss,val_accuracy\n" + "".join(rows)).encode())

