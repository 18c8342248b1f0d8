"""The train and evaluate stages on tiny data, metrics and params commands, plots, custom training."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import Done, Project, user_error

REPO = Path(__file__).resolve().parent.parent

PIPELINE = """
    stages:
      ingest:
        uses: ingest
        with: {source: raw.npz, splits: {training: 0.6, validation: 0.2, test: 0.2}, seed: 0}
        deps: [raw.npz]
        outs:
          - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                     mnist_validation_labels, mnist_test_images, mnist_test_labels]
      train:
        uses: train
        deps:
          - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                     mnist_validation_labels]
        params: [train]
        outs: [models/model.pt]
        metrics: [metrics/train.json]
        plots: [metrics/train_history.csv]
      evaluate:
        uses: evaluate
        deps: [models/model.pt, {hangar: [mnist_test_images, mnist_test_labels]}]
        metrics: [metrics/eval.json]
        plots: [metrics/confusion.csv]
"""

PARAMS = """
    train:
      model: {kind: mlp, layers: [64, 32, 10]}
      optimizer: adam
      lr: 0.01
      epochs: 3
      batch_size: 16
      seed: 0
      device: cpu
"""


def tiny_data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Ten well separated classes of 8x8 'images' with integer pixels."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    centers = rng.integers(0, 200, size=(10, 64))
    x = np.clip(centers[y] + rng.integers(0, 40, size=(n, 64)), 0, 255).astype(np.uint8)
    return x.reshape(n, 8, 8), y


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory) -> Path:
    project = Project(tmp_path_factory.mktemp("trained"))
    x, y = tiny_data()
    np.savez(project.root / "raw.npz", x=x, y=y)
    project.pipeline(PIPELINE)
    project.write("params.yaml", PARAMS)
    done = project.hpipe("repro")
    assert project.ran(done) == ["ingest", "train", "evaluate"]
    assert "epoch 3/3: train loss" in done.out
    return project.root


@pytest.fixture
def trained(trained_once: Path, project: Project) -> Project:
    """A copy of the project after its first full run (outputs, lock and Hangar repo)."""
    shutil.copytree(trained_once, project.root, dirs_exist_ok=True)
    return project


def test_train_outputs_metrics_history_and_checkpoint(trained: Project) -> None:
    metrics = json.loads(trained.read("metrics/train.json"))
    assert metrics["epochs"] == 3 and len(metrics["history"]["val_accuracy"]) == 3
    assert metrics["val_accuracy"] == metrics["history"]["val_accuracy"][-1] > 0.9
    lines = trained.read("metrics/train_history.csv").splitlines()
    assert lines[0] == "epoch,train_loss,val_loss,val_accuracy" and len(lines) == 4
    saved = torch.load(trained.root / "models/model.pt", weights_only=False)
    lock = yaml.safe_load(trained.read("pipeline.lock"))["stages"]
    data_dep = lock["train"]["deps"][1]
    assert saved["data"]["commit"] == data_dep["commit"] == metrics["data_commit"]
    assert saved["data"]["columns"]["mnist_training_labels"] == \
        data_dep["columns"]["mnist_training_labels"]["fingerprint"]
    assert saved["params"]["lr"] == 0.01 and saved["torch_version"] == torch.__version__
    assert saved["model"] == {"kind": "mlp", "layers": [64, 32, 10]}


def test_evaluate_outputs(trained: Project) -> None:
    result = json.loads(trained.read("metrics/eval.json"))
    assert result["test_samples"] == 60 and result["accuracy"] > 0.9
    assert set(result["precision"]) == set(result["recall"]) == {str(c) for c in range(10)}
    rows = trained.read("metrics/confusion.csv").splitlines()
    assert rows[0] == "actual\\predicted," + ",".join(map(str, range(10)))
    counts = [[int(v) for v in r.split(",")[1:]] for r in rows[1:]]
    assert sum(map(sum, counts)) == 60
    assert sum(counts[i][i] for i in range(10)) == round(result["accuracy"] * 60)


def test_evaluate_flags_a_model_trained_on_other_data(trained: Project) -> None:
    """`repro -f -s evaluate` after new data scores a model trained on the old commit: it says so."""
    assert json.loads(trained.read("metrics/eval.json"))["trained_on_this_data"] is True
    x, y = tiny_data()
    y[:5] = (y[:5] + 1) % 10  # new data: a few labels change
    np.savez(trained.root / "raw.npz", x=x, y=y)
    trained.hpipe("repro", "ingest")
    done = trained.hpipe("repro", "-f", "-s", "evaluate")
    assert "evaluate: warning: the model was trained on data commit" in done.err
    assert "mnist_training_labels changed" in done.err
    result = json.loads(trained.read("metrics/eval.json"))
    assert result["trained_on_this_data"] is False
    assert result["data_mismatch"]["evaluated_at"] == result["data_commit"] != result["train_data_commit"]
    run = json.loads(trained.hpipe("runs", "--json", "-n", "1").out)[0]
    assert run["metrics"]["metrics/eval.json"]["trained_on_this_data"] is False, "in the run history"


def test_training_is_deterministic_on_cpu(trained: Project) -> None:
    first = trained.read("metrics/train.json")
    trained.hpipe("repro", "-f", "-s", "train")
    assert trained.read("metrics/train.json") == first


def test_metrics_and_params_diff(trained: Project) -> None:
    shown = json.loads(trained.hpipe("metrics", "show", "--json").out)
    assert shown["metrics/eval.json"]["accuracy"] > 0.9
    assert "history.val_loss" not in shown["metrics/train.json"], "lists are left out"
    assert "precision.3" in shown["metrics/eval.json"], "nested keys flattened"
    assert trained.hpipe("metrics", "diff").out.startswith("No metrics changed between lock and workspace")
    subprocess.run("git init -q && git add pipeline.lock && git -c user.email=t@t -c user.name=t "
                   "commit -qm base", shell=True, cwd=trained.root, check=True)
    trained.write("params.yaml", PARAMS.replace("epochs: 3", "epochs: 1"))
    params = json.loads(trained.hpipe("params", "diff", "--json").out)
    assert params == [{"file": "params.yaml", "name": "train.epochs", "old": 3, "new": 1, "change": -2}]
    assert "| params.yaml | train.epochs | 3 | 1 | -2 |" in trained.hpipe("params", "diff", "--md").out
    trained.hpipe("repro")
    rows = {r["name"]: r for r in json.loads(trained.hpipe("metrics", "diff", "HEAD", "--json").out)
            if r["file"] == "metrics/train.json"}
    assert rows["epochs"]["old"] == 3 and rows["epochs"]["new"] == 1 and rows["epochs"]["change"] == -2
    assert rows["train_loss"]["change"] == pytest.approx(rows["train_loss"]["new"] - rows["train_loss"]["old"])
    md = trained.hpipe("metrics", "diff", "HEAD", "--md").out
    assert md.splitlines()[0] == "| file | metric | old | new | change |"
    table = trained.hpipe("metrics", "diff", "HEAD").out
    assert "epochs" in table and "-2" in table
    assert "cannot read pipeline.lock at 'nope'" in user_error(
        trained.hpipe("metrics", "diff", "nope", check=None))


def test_plots_files(trained: Project) -> None:
    done = trained.hpipe("plots", "-o", "out")
    pngs = sorted((trained.root / "out").glob("*.png"))
    assert [p.name for p in pngs] == ["metrics_confusion.png", "metrics_train_history.png"]
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    index = (trained.root / "out/index.html").read_text()
    assert '<img src="metrics_train_history.png"' in index and '<img src="metrics_confusion.png"' in index
    assert "wrote out/index.html" in done.out


def test_custom_training_example(project: Project) -> None:
    shutil.copytree(REPO / "examples" / "custom_training", project.root, dirs_exist_ok=True)
    done = project.hpipe("repro")
    assert project.ran(done) == ["ingest", "custom_train"]
    metrics = json.loads(project.read("metrics/custom.json"))
    lock = yaml.safe_load(project.read("pipeline.lock"))["stages"]["custom_train"]
    assert metrics["data_commit"] == lock["deps"][0]["commit"]
    assert metrics["train_accuracy"] > 0.8 and len(metrics["losses"]) == 3


@pytest.fixture(scope="module")
def ingested_once(tmp_path_factory) -> Path:
    """A project whose ingest stage ran: 8x8 images, stored flat as (64,) float32."""
    project = Project(tmp_path_factory.mktemp("ingested"))
    x, y = tiny_data(60)
    np.savez(project.root / "raw.npz", x=x, y=y)
    project.pipeline(PIPELINE)
    project.write("params.yaml", PARAMS)
    assert project.ran(project.hpipe("repro", "ingest")) == ["ingest"]
    return project.root


@pytest.fixture
def ingested(ingested_once: Path, project: Project) -> Project:
    shutil.copytree(ingested_once, project.root, dirs_exist_ok=True)
    return project


def failed_with(project: Project, done: Done, stage: str) -> str:
    """Assert a built-in stage failed on bad input: exit 1, one line on stderr, no traceback."""
    assert done.code == 1 and f"✗ {stage}: failed" in done.out and "exited with code 2" in done.out, done
    assert "Traceback" not in done.out + done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    return lines[0]


def test_an_mlp_that_does_not_fit_the_data_fails_before_loading_it(ingested: Project) -> None:
    """Issue 9: `layers: [784, 10]` on 64 features is one line naming the key, not a torch traceback."""
    ingested.write("params.yaml", "train:\n  model: {kind: mlp, layers: [784, 10]}\n  epochs: 1\n  device: cpu\n")
    done = ingested.hpipe("repro", check=1)
    assert failed_with(ingested, done, "train") == (
        "hpipe: error: params.yaml:2: train.model.layers[0] is 784 but column mnist_training_images"
        " holds samples of shape (64,) = 64 features; set it to 64 (or auto)")
    assert not list(ingested.root.glob(".hpipe/columns/*.npy")), "no column was read"
    assert not ingested.exists("models/model.pt") and "evaluate" not in done.out
    debug = ingested.hpipe("--debug", "repro", "-s", "train", check=1)
    assert "Traceback" in debug.err and debug.err.strip().splitlines()[-1] == done.err.strip()
    ingested.write("params.yaml", "train:\n  model: {kind: mlp, layers: [auto, 5]}\n  epochs: 1\n  device: cpu\n")
    line = failed_with(ingested, ingested.hpipe("repro", "train", check=1), "train")
    assert line == ("hpipe: error: params.yaml:2: train.model.layers[1] is 5 but column"
                    " mnist_training_labels holds labels up to 9 (10 classes); set it to 10")


def test_a_cnn_learns_the_image_side_from_the_column(ingested: Project) -> None:
    """Issue 9: a CNN on 8x8 images needs no `side:`; a wrong one is one line naming the key."""
    ingested.write("params.yaml", "train:\n  model: {kind: cnn, channels: [4, 8], side: 28}\n"
                                  "  epochs: 1\n  device: cpu\n")
    assert failed_with(ingested, ingested.hpipe("repro", check=1), "train") == (
        "hpipe: error: params.yaml:2: train.model.side is 28 but column mnist_training_images holds"
        " samples of shape (64,) = 64 features, not 1 × 28 × 28; set it to 8")
    ingested.write("params.yaml", "train:\n  model: {kind: cnn, channels: [4, 8]}\n  epochs: 1\n  device: cpu\n")
    done = ingested.hpipe("repro")
    assert ingested.ran(done) == ["train", "evaluate"] and "Traceback" not in done.err
    saved = torch.load(ingested.root / "models/model.pt", weights_only=False)
    assert saved["model"] == {"kind": "cnn", "channels": [4, 8], "classes": 10, "side": 8, "in_channels": 1}
    assert json.loads(ingested.read("metrics/eval.json"))["test_samples"] == 12


def test_evaluate_checks_the_checkpoint_against_its_columns(trained: Project) -> None:
    """Issue 9: a checkpoint whose model does not take the test samples is one line, before loading."""
    from hangar_pipe.stages.train import build_model

    config = {"kind": "mlp", "layers": [36, 10]}
    torch.save({"state_dict": build_model(config).state_dict(), "model": config, "data": {}},
               trained.root / "models/model.pt")
    shutil.rmtree(trained.root / ".hpipe/columns")
    assert failed_with(trained, trained.hpipe("repro", "-s", "evaluate", check=1), "evaluate") == (
        "hpipe: error: models/model.pt: model.layers[0] is 36 but column mnist_test_images holds"
        " samples of shape (64,) = 64 features; evaluate it on columns shaped like its training"
        " data, or retrain it")
    assert not list(trained.root.glob(".hpipe/columns/*.npy")), "no column was read"


def test_models_and_devices() -> None:
    from hangar_pipe.errors import UserError
    from hangar_pipe.stages.train import build_model, pick_device

    mlp = build_model({"kind": "mlp", "layers": [784, 500, 200, 10]})
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [500, 200, 10]
    cnn = build_model({"kind": "cnn", "channels": [4, 8]})
    assert cnn(torch.zeros(5, 784)).shape == (5, 10), "a checkpoint without side: 28x28"
    assert cnn(torch.zeros(5, 28, 28)).shape == (5, 10), "samples of any shape are flattened"
    small = build_model({"kind": "cnn", "channels": [4, 8], "classes": 3, "side": 8, "in_channels": 3})
    assert small(torch.zeros(5, 3, 8, 8, dtype=torch.float64)).shape == (5, 3)
    assert build_model({"kind": "mlp", "layers": [64, 10]})(torch.zeros(2, 8, 8, dtype=torch.uint8)).shape == (2, 10)
    assert list(mlp.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    with pytest.raises(UserError, match="unknown model kind"):
        build_model({"kind": "rnn"})
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda")


def test_train_reads_a_toml_params_file(ingested: Project) -> None:
    ingested.write("params.toml", """
        [train]
        optimizer = "adam"
        lr = 0.02
        epochs = 1
        batch_size = 16
        device = "cpu"
        model = {kind = "mlp", layers = ["auto", 16, 10]}
    """)
    ingested.pipeline(PIPELINE.replace(
        "uses: train\n", "uses: train\n        with: {params_file: params.toml}\n").replace(
        "params: [train]", "params: [{params.toml: [train]}]"))
    assert ingested.ran(ingested.hpipe("repro", "train")) == ["train"]
    saved = torch.load(ingested.root / "models/model.pt", weights_only=False)
    assert saved["params"]["lr"] == 0.02 and saved["model"]["layers"] == [64, 16, 10]
    ingested.write("params.toml", ingested.read("params.toml").replace("lr = 0.02", "lr = 0.03"))
    assert ingested.hpipe("status").out.startswith("• train: would run (changed params: params.toml: train.lr (modified))")
