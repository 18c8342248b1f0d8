"""The train and evaluate stages end to end with the options of issue 12: your own model (its file
tracked), a 3x32x32 column with the built-in CNN, regression, schedulers, early stopping,
val_every, AdamW, gradient clipping, and bad input as one line (exit 2, nothing recorded)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import ENV, Project
from hangar_repo import Repo
from test_training import failed_with, tiny_data

PIPELINE = """
    stages:
      train:
        uses: train
        with: {images: x, labels: y, val_images: val_x, val_labels: val_y}
        deps: [{hangar: [x, y, val_x, val_y]}]
        params: [train]
        outs: [models/model.pt]
        metrics: [metrics/train.json]
        plots: [metrics/train_history.csv]
      evaluate:
        uses: evaluate
        with: {images: test_x, labels: test_y}
        deps: [models/model.pt, {hangar: [test_x, test_y]}]
        metrics: [metrics/eval.json]
        plots: [metrics/confusion.csv]
      rgb:
        uses: train
        with: {images: rgb_x, labels: rgb_y, val_images: rgb_x, val_labels: rgb_y, section: rgb,
               checkpoint: models/rgb.pt, metrics: metrics/rgb.json, history: metrics/rgb.csv}
        deps: [{hangar: [rgb_x, rgb_y]}]
        params: [rgb]
        outs: [models/rgb.pt]
        metrics: [metrics/rgb.json]
      regress:
        uses: train
        with: {images: x, labels: z, val_images: val_x, val_labels: val_z, section: regress,
               checkpoint: models/reg.pt, metrics: metrics/reg.json, history: metrics/reg.csv}
        deps: [{hangar: [x, z, val_x, val_z]}]
        params: [regress]
        outs: [models/reg.pt]
        metrics: [metrics/reg.json]
        plots: [metrics/reg.csv]
      regress_eval:
        uses: evaluate
        with: {images: test_x, labels: test_z, checkpoint: models/reg.pt, metrics: metrics/reg_eval.json,
               confusion: metrics/reg_errors.csv}
        deps: [models/reg.pt, {hangar: [test_x, test_z]}]
        metrics: [metrics/reg_eval.json]
        plots: [metrics/reg_errors.csv]
"""

PARAMS = """
    train:
      model: {module: "pkg.models:Net", kwargs: {hidden: 16}}
      optimizer: adam
      lr: 0.01
      epochs: 6
      batch_size: 16
      scheduler: {kind: step, step_size: 1, gamma: 0.5}
      early_stopping: {patience: 1, min_delta: 100}
      device: cpu
    rgb:
      model: {kind: cnn, channels: [4, 8], classes: 3}
      epochs: 1
      batch_size: 8
      amp: true
      device: cpu
    regress:
      task: regression
      model: {kind: mlp, layers: [auto, 16, 2]}
      optimizer: adamw
      lr: 0.01
      epochs: 3
      batch_size: 16
      scheduler: {kind: onecycle}
      grad_clip: 1.0
      val_every: 2
      device: cpu
"""

MODELS = """
    from torch import nn


    class Net(nn.Module):
        def __init__(self, hidden=32, classes=10):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, classes))

        def forward(self, x):
            return self.layers(x.flatten(1))
"""


def write_columns(root: Path) -> None:
    """Images of 64 features with 10 classes and 2 regression targets (80 / 20 / 20 samples), and
    24 3x32x32 images of 3 classes."""
    x, y = tiny_data(120)
    flat = (x.reshape(len(x), -1) / 255).astype(np.float32)
    z = np.stack([flat[:, :8].sum(1), flat[:, 8:16].mean(1)], 1).astype(np.float32)
    columns = {}
    for prefix, part in (("", slice(0, 80)), ("val_", slice(80, 100)), ("test_", slice(100, 120))):
        keys = range(part.start, part.stop)
        columns[f"{prefix}x"] = {i: flat[i] for i in keys}
        columns[f"{prefix}y"] = {i: np.array([y[i]], dtype=np.int64) for i in keys}
        columns[f"{prefix}z"] = {i: z[i] for i in keys}
    rng = np.random.default_rng(1)
    columns["rgb_x"] = {i: rng.random((3, 32, 32), dtype=np.float32) for i in range(24)}
    columns["rgb_y"] = {i: np.array([i % 3], dtype=np.int64) for i in range(24)}
    Repo(root).write("data", **columns)


@pytest.fixture(scope="module")
def columns_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project before any run: its Hangar columns, pkg/models.py, pipeline.yaml."""
    project = Project(tmp_path_factory.mktemp("columns"))
    write_columns(project.root)
    project.write("pkg/__init__.py", "")
    project.write("pkg/models.py", MODELS)
    project.pipeline(PIPELINE)
    return project.root


@pytest.fixture
def columns(columns_once: Path, project: Project) -> Project:
    shutil.copytree(columns_once, project.root, dirs_exist_ok=True)
    return project


@pytest.fixture(scope="module")
def ran_once(columns_once: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = Project(tmp_path_factory.mktemp("options"))
    shutil.copytree(columns_once, project.root, dirs_exist_ok=True)
    project.write("params.yaml", PARAMS)
    done = project.hpipe("repro")
    assert sorted(project.ran(done)) == ["evaluate", "regress", "regress_eval", "rgb", "train"]
    return project.root, done.out


@pytest.fixture
def ran(ran_once: tuple[Path, str], project: Project) -> Project:
    """A copy of the project after its first run (outputs, lock and Hangar repo)."""
    shutil.copytree(ran_once[0], project.root, dirs_exist_ok=True)
    return project


def test_your_own_model_trains_and_its_file_is_tracked(ran: Project) -> None:
    saved = torch.load(ran.root / "models/model.pt", weights_only=False)
    assert saved["model"] == {"module": "pkg.models:Net", "kwargs": {"hidden": 16}}
    assert list(saved["state_dict"]) == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert saved["params"]["scheduler"] == {"kind": "step", "step_size": 1, "gamma": 0.5}
    assert json.loads(ran.read("metrics/eval.json"))["test_samples"] == 20
    lock = yaml.safe_load(ran.read("pipeline.lock"))["stages"]["train"]
    assert [d["code"] for d in lock["deps"] if "code" in d] == ["hangar_pipe.stages.train", "pkg.models"]
    assert ran.hpipe("status").out.strip() == "Everything is up to date."
    code = ("import sys, runpy; sys.argv = ['hpipe', 'status'];\n"
            "try: runpy.run_module('hangar_pipe.cli', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'hangar', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ran.root, capture_output=True, text=True,
                         check=True, env=ENV).stdout
    assert out.strip().endswith("[]"), "the spec-time hook reads params.yaml, imports nothing"
    ran.write("pkg/models.py", MODELS.replace("hidden=32", "hidden=64"))
    assert ran.hpipe("status").out.startswith(
        "• train: would run (changed deps: code:pkg.models (modified))\n• evaluate: may run")


def test_early_stopping_and_the_schedule_are_recorded(ran_once: tuple[Path, str], ran: Project) -> None:
    assert "early stopping after epoch 2/6: val_loss did not improve by more than 100 for 1 validation" \
        in ran_once[1]
    metrics = json.loads(ran.read("metrics/train.json"))
    assert (metrics["epochs"], metrics["stop_reason"], metrics["best_epoch"]) == (2, "early_stopping", 1)
    assert metrics["hyperparameters"]["epochs"] == 6, "the setting; `epochs` is what ran"
    assert metrics["hyperparameters"]["early_stopping"] == {"metric": "val_loss", "patience": 1, "min_delta": 100}
    assert metrics["hyperparameters"]["model"] == {"module": "pkg.models:Net", "kwargs": {"hidden": 16}}
    assert metrics["history"]["lr"] == [0.01, 0.005] and len(metrics["history"]["val_loss"]) == 2
    assert ran.read("metrics/train_history.csv").splitlines()[0] == "epoch,train_loss,val_loss,val_accuracy,lr"
    saved = torch.load(ran.root / "models/model.pt", weights_only=False)
    assert saved["training"] == {"epochs": 2, "stop_reason": "early_stopping", "best_epoch": 1,
                                 "device": "cpu", "precision": "float32", "threads": 1, "distributed": None,
                                 "loader": {"streamed": False, "memory_budget": 4 * 2**30, "order": {"kind": "full"}}}


def test_a_cnn_learns_a_3x32x32_column(ran_once: tuple[Path, str], ran: Project) -> None:
    saved = torch.load(ran.root / "models/rgb.pt", weights_only=False)
    assert saved["model"] == {"kind": "cnn", "channels": [4, 8], "classes": 3, "side": 32, "in_channels": 3}
    assert "train: amp applies on CUDA only; this cpu run trains in float32" in ran_once[1]
    metrics = json.loads(ran.read("metrics/rgb.json"))
    assert metrics["precision"] == "float32" and metrics["hyperparameters"]["amp"] is True


def test_regression_end_to_end(ran: Project) -> None:
    metrics = json.loads(ran.read("metrics/reg.json"))
    assert {"train_loss", "val_loss", "val_mae", "val_rmse"} <= set(metrics) and "val_accuracy" not in metrics
    hp = metrics["hyperparameters"]
    assert (hp["task"], hp["optimizer"]["kind"], hp["weight_decay"], hp["grad_clip"]) == ("regression", "adamw", 0.01, 1.0)
    assert hp["scheduler"]["max_lr"] == 0.01 and hp["model"] == {"kind": "mlp", "layers": [64, 16, 2]}
    assert metrics["history"]["val_mae"][0] is None and None not in metrics["history"]["val_mae"][1:]
    rows = ran.read("metrics/reg.csv").splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,val_mae,val_rmse,lr" and rows[1].startswith("1,")
    assert rows[1].split(",")[2:5] == ["", "", ""], "val_every: 2 validates epochs 2 and 3"
    result = json.loads(ran.read("metrics/reg_eval.json"))
    assert {"loss", "mae", "rmse", "test_samples"} <= set(result)
    assert not {"accuracy", "precision", "recall"} & set(result)
    assert result["rmse"] == pytest.approx(result["loss"] ** 0.5)
    table = ran.read("metrics/reg_errors.csv").splitlines()
    assert table[0] == "output,mae,rmse" and [r.split(",")[0] for r in table[1:]] == ["0", "1"]
    assert np.mean([float(r.split(",")[1]) for r in table[1:]]) == pytest.approx(result["mae"])
    assert "wrote out/index.html" in ran.hpipe("plots", "-o", "out").out, "plots draws the gaps"


def test_the_options_keep_cpu_training_byte_identical(ran: Project) -> None:
    """onecycle, AdamW, clipping and val_every: a forced rerun writes the same metrics and history
    bytes and the same weights (the checkpoint also records the project's path, which the copy
    changed)."""
    before = [ran.read(f) for f in ("metrics/reg.json", "metrics/reg.csv")]
    weights = torch.load(ran.root / "models/reg.pt", weights_only=False)["state_dict"]
    assert ran.ran(ran.hpipe("repro", "-f", "-s", "regress")) == ["regress"]
    assert [ran.read(f) for f in ("metrics/reg.json", "metrics/reg.csv")] == before
    again = torch.load(ran.root / "models/reg.pt", weights_only=False)["state_dict"]
    assert list(again) == list(weights) and all(torch.equal(again[k], weights[k]) for k in weights)


@pytest.mark.parametrize(("params", "line"), [
    ("scheduler: {kind: step, step_size: 1, gama: 0.5}",
     "hpipe: error: params.yaml:4: train.scheduler.gama: unknown key (known: kind, step_size, gamma)"
     " (did you mean 'gamma'?)"),
    ("optimizer: {kind: adam, eps: 1.0e-7, amsgrad: true, weight_decay: 0.1}",
     "hpipe: error: params.yaml:4: train.optimizer.weight_decay: unknown key (known: kind, betas, eps, amsgrad)"),
    ("device: cuda", "hpipe: error: params.yaml:4: train.device: device 'cuda' asked for, but CUDA is not available"),
    ("model: {module: 'pkg.models:Net', kwargs: {classes: 5}}",
     "hpipe: error: params.yaml:4: train.model outputs 5 values per sample but column y holds labels up to 9"
     " (10 classes); make it output 10"),
    ("model: {module: 'pkg.modelz:Net'}",
     "hpipe: error: params.yaml:4: train.model.module: cannot import 'pkg.modelz'"
     " (ModuleNotFoundError: No module named 'pkg.modelz')"),
    ("lr: 1.0e+20\n  momentum: 0.9\n  model: {layers: [auto, 32, 32, 10]}",
     "hpipe: error: params.yaml:4: train.lr: the loss is nan at epoch 1, batch 2 of 5; lower lr, set grad_clip,"
     " or check the columns' values"),
])
def test_bad_input_is_one_line_and_nothing_is_recorded(columns: Project, params: str, line: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENV, "CUDA_VISIBLE_DEVICES", "")  # no CUDA for these runs, on any machine
    project = columns
    device = "" if "device" in params else "  device: cpu\n"
    project.write("params.yaml", f"train:\n  epochs: 2\n  batch_size: 16\n  {params}\n{device}")
    done = project.hpipe("repro", "train", check=1)
    assert failed_with(project, done, "train").startswith(line)
    assert not project.exists("models/model.pt") and not project.exists("pipeline.lock")
