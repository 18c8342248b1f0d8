"""The train stage's settings in-process: parsing and its one-line errors, the loop's optimizers,
schedulers, early stopping, val_every, gradient clipping and non-finite losses on a real Hangar
commit, your own model's checks, and the spec-time hook that tracks its file."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hangar_repo import Repo

from hangar_pipe.core.files import CodeDep
from hangar_pipe.core.yamlfile import parse_yaml
from hangar_pipe.errors import UserError
from hangar_pipe.stages.train import Plan, TrainState, fit, start
from hangar_pipe.training.custom_model import build_custom, custom_config, custom_outputs
from hangar_pipe.training.early_stopping import Stopper
from hangar_pipe.training.hyperparams import EarlyStopping, Hyperparams, parse
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset
from hangar_pipe.training.models import build_model
from hangar_pipe.training.precision import Precision
from hangar_pipe.training.shapes import ColumnSpec, Where, check_classes, check_target_size


def section(text: str) -> tuple[dict[str, Any], Where]:
    """params.yaml text -> (its train section, where it is, with lines)."""
    text = textwrap.dedent(text).lstrip("\n")
    return yaml.safe_load(text)["train"], Where("params.yaml", ("train",), parse_yaml(text, "params.yaml"))


def settings(text: str) -> Hyperparams:
    return parse(*section(text))


def error(text: str) -> str:
    with pytest.raises(UserError) as caught:
        settings(text)
    return str(caught.value)


def test_defaults_are_filled_in_and_recorded() -> None:
    hp = settings("train: {}\n")
    assert (hp.optimizer, hp.lr, hp.weight_decay, hp.epochs, hp.task) == ("sgd", 0.01, 0.0, 10, "classification")
    assert hp.scheduler is None and hp.early_stopping is None and hp.grad_clip is None
    assert hp.record()["optimizer"] == {"kind": "sgd", "nesterov": False, "dampening": 0.0}
    adamw = settings("train: {optimizer: adamw}\n")
    assert adamw.weight_decay == 0.01, "torch's AdamW default when the section leaves it out"
    assert adamw.record()["optimizer"] == {"kind": "adamw", "betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False}
    cosine = settings("train: {epochs: 7, scheduler: {kind: cosine}}\n").scheduler
    assert cosine is not None and cosine.options == {"t_max": 7, "eta_min": 0.0}, "t_max: the epochs"
    onecycle = settings("train: {lr: 0.2, scheduler: {kind: onecycle, pct_start: 0.25}}\n").scheduler
    assert onecycle is not None and onecycle.options["max_lr"] == 0.2 and onecycle.options["pct_start"] == 0.25
    assert onecycle.per_batch and not cosine.per_batch
    stop = settings("train: {early_stopping: {}}\n").early_stopping
    assert stop == EarlyStopping("val_loss", 3, 0.0)
    record = settings("train: {scheduler: {kind: step, step_size: 2}, early_stopping: {patience: 1}}\n").record()
    assert record["scheduler"] == {"kind": "step", "step_size": 2, "gamma": 0.1}
    assert record["early_stopping"] == {"metric": "val_loss", "patience": 1, "min_delta": 0.0}
    assert record["memory_budget"] == 4 * 2**30 and settings("train: {memory_budget: 1.5 GB}\n").memory_budget == 1.5e9


@pytest.mark.parametrize(("text", "message"), [
    ("train:\n  epochs: 1\n  scheduler: {kind: step, step_size: 1, gama: 0.5}\n",
     "params.yaml:3: train.scheduler.gama: unknown key (known: kind, step_size, gamma) (did you mean 'gamma'?)"),
    ("train:\n  optimizer:\n    kind: adam\n    beta: [0.9, 0.99]\n",
     "params.yaml:4: train.optimizer.beta: unknown key (known: kind, betas, eps, amsgrad) (did you mean 'betas'?)"),
    ("train:\n  optimizer: rmsprop\n", "params.yaml:2: train.optimizer: unknown optimizer 'rmsprop' (sgd | adam | adamw)"),
    ("train:\n  optimizer: {kind: adamm}\n",
     "params.yaml:2: train.optimizer.kind: unknown optimizer 'adamm' (sgd | adam | adamw) (did you mean 'adam'?)"),
    ("train:\n  scheduler: {kind: plateau}\n", "train.scheduler.kind: unknown scheduler 'plateau' (step | cosine | onecycle)"),
    ("train:\n  scheduler: {gamma: 0.5}\n", "params.yaml:2: train.scheduler: needs a kind (step | cosine | onecycle)"),
    ("train:\n  scheduler: {kind: step}\n", "train.scheduler: step needs step_size (the epochs between two lr drops)"),
    ("train:\n  scheduler: cosine\n", "train.scheduler: expected a mapping such as {kind: cosine}, got 'cosine'"),
    ("train:\n  scheduler: {kind: onecycle, pct_start: 1.5}\n",
     "train.scheduler.pct_start: expected a number between 0 and 1, got 1.5"),
    ("train:\n  lr: 1e-3\n",
     "params.yaml:2: train.lr: expected a positive number, got '1e-3' (YAML reads 1e-3 as text: write it"
     " with a dot, such as 1.0e-3)"),
    ("train:\n  lrate: 0.1\n", "params.yaml:2: train.lrate: unknown key (known: model, task, optimizer, lr,"),
    ("train:\n  epochs: 0\n", "train.epochs: expected a positive whole number, got 0"),
    ("train:\n  val_every: 1.5\n", "train.val_every: expected a positive whole number, got 1.5"),
    ("train:\n  grad_clip: -1\n", "train.grad_clip: expected a positive number or null, got -1"),
    ("train:\n  amp: yes please\n", "train.amp: expected true or false, got 'yes please'"),
    ("train:\n  task: segmentation\n", "train.task: expected classification or regression, got 'segmentation'"),
    ("train:\n  optimizer: adam\n  momentum: 0.9\n",
     "params.yaml:3: train.momentum: is SGD's; adam has betas instead (optimizer: {kind: adam, betas: [0.9, 0.999]})"),
    ("train:\n  optimizer: {kind: sgd, nesterov: true}\n", "train.optimizer.nesterov: needs momentum > 0 and dampening 0"),
    ("train:\n  optimizer: {kind: adam, betas: [0.9]}\n",
     "train.optimizer.betas: expected two numbers in [0, 1), such as [0.9, 0.999], got [0.9]"),
    ("train:\n  early_stopping: {metric: val_accuracy, patiense: 2}\n",
     "train.early_stopping.patiense: unknown key (known: metric, patience, min_delta) (did you mean 'patience'?)"),
    ("train:\n  task: regression\n  early_stopping: {metric: val_accuracy}\n",
     "params.yaml:3: train.early_stopping.metric: unknown metric 'val_accuracy' for regression"
     " (val_loss | val_mae | val_rmse)"),
    ("train:\n  early_stopping: {patience: 0}\n", "train.early_stopping.patience: expected a positive whole number, got 0"),
    ("train:\n  memory_budget: lots\n", "params.yaml:2: train.memory_budget: expected a size such as 4GiB or 500MB,"
     " got 'lots'"),
    ("train:\n  memory_budget: 0\n", "train.memory_budget: expected a size such as 4GiB or 500MB, got 0"),
])
def test_bad_settings_are_one_line_naming_the_key(text: str, message: str) -> None:
    assert message in error(text)


def test_early_stopping_state() -> None:
    low = Stopper(EarlyStopping("val_loss", 2, 0.1))
    assert [low.update(e, v) for e, v in enumerate([1.0, 0.95, 0.5, 0.45, 0.44], 1)] == [
        False, False, False, False, True]
    assert (low.best, low.best_epoch) == (0.5, 3) and "best 0.5000 at epoch 3" in low.reason()
    high = Stopper(EarlyStopping("val_accuracy", 1, 0.0))
    assert [high.update(e, v) for e, v in enumerate([0.5, 0.6, 0.6], 1)] == [False, False, True]
    again = Stopper(high.options)
    again.load_state_dict(high.state_dict())
    assert again == high


N = 48


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One commit: 48 samples of 16 features, 4 classes, 2 regression targets, and targets
    holding one nan."""
    path = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 16)).astype(np.float32)
    y = (x[:, :4].argmax(1)).astype(np.int64)
    z = (x[:, :2] * 2.0).astype(np.float32)
    bad = z.copy()
    bad[7, 1] = np.nan
    commit = Repo(path).write("data", x={i: x[i] for i in range(N)}, y={i: y[i:i + 1] for i in range(N)},
                              z={i: z[i] for i in range(N)}, bad={i: bad[i] for i in range(N)})
    return path, commit


def train(data: tuple[Path, str], text: str, columns: tuple[str, str] = ("x", "y"),
          model: torch.nn.Module | None = None) -> TrainState:
    """Train an MLP (16-8-outputs) on the commit as the stage does, with a params section."""
    body, where = section(text)
    hp = parse(body, where)
    torch.manual_seed(hp.seed)
    outputs = 4 if hp.task == "classification" else 2
    model = model or build_model({"kind": "mlp", "layers": [16, 8, outputs]})
    dataset = ColumnsDataset(list(columns), repo=data[0], commit=data[1], cache_dir=False)
    loader = BatchLoader(dataset, hp.batch_size, shuffle=True, seed=hp.seed)
    state = start(hp, model, len(loader))
    return fit(state, Plan.of(hp, where=where, columns=columns), loader, BatchLoader(dataset, 1024))


def test_step_and_cosine_schedules_change_the_lr_each_epoch(data: tuple[Path, str]) -> None:
    step = train(data, "train: {lr: 0.1, epochs: 5, batch_size: 16, scheduler: {kind: step, step_size: 2, gamma: 0.5}}\n")
    assert step.log["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    cosine = train(data, "train: {lr: 0.1, epochs: 4, batch_size: 16, scheduler: {kind: cosine}}\n")
    assert cosine.log["lr"] == pytest.approx([0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    floor = train(data, "train: {lr: 0.1, epochs: 3, scheduler: {kind: cosine, t_max: 2, eta_min: 0.01}}\n")
    assert floor.log["lr"] == pytest.approx([0.1, 0.055, 0.01])


def test_onecycle_steps_after_every_batch(data: tuple[Path, str]) -> None:
    state = train(data, "train: {optimizer: adamw, lr: 0.1, epochs: 3, batch_size: 16,"
                        " scheduler: {kind: onecycle, div_factor: 10, final_div_factor: 100}}\n")
    assert isinstance(state.optimizer, torch.optim.AdamW)
    lrs = state.log["lr"]
    assert lrs[0] == pytest.approx(0.01), "max_lr (lr) / div_factor"
    assert lrs[1] is not None and lrs[2] is not None and lrs[1] > lrs[0] and lrs[2] < lrs[1]
    assert state.schedule is not None and state.schedule.scheduler.last_epoch == 9, \
        "3 epochs x 3 batches: all of torch's total_steps, none past it"


def test_early_stopping_stops_and_says_why(data: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    state = train(data, "train: {epochs: 6, early_stopping: {patience: 2, min_delta: 100}}\n")
    assert state.epoch == 3 and len(state.log["val_loss"]) == 3
    assert state.stopped is not None and state.stopped.startswith(
        "val_loss did not improve by more than 100 for 2 validations (best")
    assert "early stopping after epoch 3/6: val_loss did not improve" in capsys.readouterr().out
    full = train(data, "train: {epochs: 2, early_stopping: {patience: 1, min_delta: 100}}\n")
    assert full.epoch == 2 and full.stopped is None, "stopping at the last epoch is no early stop"


def test_val_every_validates_every_n_epochs_and_the_last(data: tuple[Path, str]) -> None:
    state = train(data, "train: {epochs: 5, val_every: 2}\n")
    assert [v is not None for v in state.log["val_loss"]] == [False, True, False, True, True]
    assert [v is not None for v in state.log["val_accuracy"]] == [False, True, False, True, True]
    assert all(v is not None for v in state.log["train_loss"])


def test_grad_clip_bounds_every_step(data: tuple[Path, str]) -> None:
    torch.manual_seed(0)
    before = build_model({"kind": "mlp", "layers": [16, 8, 4]})
    start_weights = torch.cat([p.detach().flatten().clone() for p in before.parameters()])
    state = train(data, "train: {lr: 1.0, epochs: 1, batch_size: 16, grad_clip: 0.001}\n", model=before)
    moved = float((torch.cat([p.detach().flatten() for p in state.model.parameters()]) - start_weights).norm())
    assert 0 < moved <= 3 * 1.0 * 0.001 * (1 + 1e-4), "3 steps of lr x at most the clipped norm"
    free = train(data, "train: {lr: 1.0, epochs: 1, batch_size: 16}\n")
    unclipped = float((torch.cat([p.detach().flatten() for p in free.model.parameters()]) - start_weights).norm())
    assert unclipped > 100 * moved


def test_regression_logs_mae_and_rmse(data: tuple[Path, str]) -> None:
    state = train(data, "train: {task: regression, optimizer: adam, lr: 0.01, epochs: 2}\n", ("x", "z"))
    assert list(state.log) == ["train_loss", "val_loss", "val_mae", "val_rmse"]
    loss, rmse = state.log["val_loss"][-1], state.log["val_rmse"][-1]
    assert loss is not None and rmse is not None and rmse == pytest.approx(math.sqrt(loss))


def test_a_non_finite_loss_names_the_epoch_and_batch(data: tuple[Path, str]) -> None:
    with pytest.raises(UserError) as caught:
        train(data, "train: {task: regression, epochs: 1, batch_size: 16}\n", ("x", "bad"))
    assert str(caught.value).startswith("train: the loss is nan at epoch 1, batch ")
    assert str(caught.value).endswith(" of 3: column bad holds nan or infinite values in that batch")
    text = "train:\n  momentum: 0.9\n  lr: 1.0e+20\n  epochs: 3\n"
    with pytest.raises(UserError) as caught:
        train(data, text, model=build_model({"kind": "mlp", "layers": [16, 32, 32, 4]}))
    assert str(caught.value) == ("params.yaml:3: train.lr: the loss is nan at epoch 1, batch 2 of 2; lower lr,"
                                 " set grad_clip, or check the columns' values")


def test_amp_is_float32_on_the_cpu() -> None:
    cpu = Precision.on(torch.device("cpu"), True)
    assert cpu.dtype is None and cpu.scaler is None and cpu.name == "float32"


MODELS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden=8, outputs=4):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    def forward(self, x):
        return self.body(x)


def make(outputs=4):
    return Net(outputs=outputs)


def not_a_model():
    return 3


class Tuple(Net):
    def forward(self, x):
        return self.body(x), x


class Cube(Net):
    def forward(self, x):
        return self.body(x).reshape(len(x), 2, 2)


net = Net()
"""


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A models module, importable under a name of its own for each test."""
    name = f"usermodels_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


MODEL_WHERE = Where("params.yaml", ("train", "model"), parse_yaml(
    "train:\n  epochs: 1\n  model:\n    module: m:Net\n    kwargs: {}\n", "params.yaml"))
X = ColumnSpec("x", (16,), "float32")


def custom_error(config: dict[str, Any]) -> str:
    with pytest.raises(UserError) as caught:
        build_custom(custom_config(config, MODEL_WHERE), MODEL_WHERE)
    return str(caught.value)


def test_your_own_model_is_built_and_measured(models: str) -> None:
    config = custom_config({"module": f"{models}:Net", "kwargs": {"hidden": 4}}, MODEL_WHERE)
    model = build_custom(config, MODEL_WHERE)
    assert model.body[1].out_features == 4 and model.training
    outputs = custom_outputs(model, config, X, MODEL_WHERE, classifier=True)
    assert outputs.count == 4 and model.training, "measured in eval mode, then put back"
    made = build_custom({"module": f"{models}:make", "kwargs": {"outputs": 3}}, MODEL_WHERE)
    assert custom_outputs(made, config, X, MODEL_WHERE, classifier=True).count == 3
    with pytest.raises(UserError) as caught:
        check_classes(outputs, "y", 0, 9, MODEL_WHERE)
    assert str(caught.value) == ("params.yaml:3: train.model outputs 4 values per sample but column y holds"
                                 " labels up to 9 (10 classes); make it output 10")
    with pytest.raises(UserError) as caught:
        check_target_size(outputs, ColumnSpec("z", (2,), "float32"), MODEL_WHERE)
    assert str(caught.value) == ("params.yaml:3: train.model outputs 4 values per sample but column z holds"
                                 " targets of shape (2,) = 2 values; make it output 2")


def test_your_own_model_errors_name_the_key(models: str) -> None:
    assert custom_error({"module": "no_such_package.models:Net"}) == (
        "params.yaml:4: train.model.module: cannot import 'no_such_package.models'"
        " (ModuleNotFoundError: No module named 'no_such_package')")
    assert custom_error({"module": f"{models}:Nett"}) == (
        f"params.yaml:4: train.model.module: module '{models}' has no attribute 'Nett' (did you mean 'Net'?)")
    assert custom_error({"module": f"{models}:not_a_model"}) == (
        f"params.yaml:4: train.model.module: {models}:not_a_model returned int, not a torch.nn.Module")
    assert custom_error({"module": f"{models}:net"}).endswith(
        f"train.model.module: {models}:net is a model instance; name an nn.Module class or a function that returns one")
    assert custom_error({"module": f"{models}:Net", "kwargs": {"hiden": 3}}).startswith(
        f"params.yaml:5: train.model.kwargs: {models}:Net(**kwargs) failed: TypeError: ")
    assert custom_error({"module": "Net"}) == "params.yaml:4: train.model.module: expected 'package.module:Name', got 'Net'"
    assert custom_error({"module": f"{models}:Net", "kwargs": [1]}).endswith(
        "train.model.kwargs: expected a mapping of keyword arguments, got [1]")
    assert custom_error({"module": f"{models}:Net", "kind": "mlp"}).endswith(
        "train.model.kind: unknown key for your own model (known: module, kwargs); a model is a built-in"
        " kind (kind:) or your own (module:), not both")


def test_your_own_model_is_checked_on_one_sample(models: str) -> None:
    def outputs_error(name: str, images: ColumnSpec = X, classifier: bool = True) -> str:
        config = {"module": f"{models}:{name}", "kwargs": {}}
        with pytest.raises(UserError) as caught:
            custom_outputs(build_custom(config, MODEL_WHERE), config, images, MODEL_WHERE, classifier=classifier)
        return str(caught.value)

    assert outputs_error("Net", ColumnSpec("big", (3, 8, 8), "float32")).startswith(
        f"params.yaml:3: train.model fails on one sample shaped like column big, (1, 3, 8, 8) ({models}:Net):"
        " RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert outputs_error("Tuple") == f"params.yaml:3: train.model returns tuple ({models}:Tuple); it must return one tensor"
    assert outputs_error("Cube") == (f"params.yaml:3: train.model returns shape (1, 2, 2) for one sample"
                                     f" ({models}:Cube); a classifier returns (batch, classes)")
    config = {"module": f"{models}:Cube", "kwargs": {}}
    cube = custom_outputs(build_custom(config, MODEL_WHERE), config, X, MODEL_WHERE, classifier=False)
    assert cube.count == 4, "a regression model may output any shape: its values are counted"


def test_the_spec_hook_tracks_your_model_file(tmp_path: Path) -> None:
    from hangar_pipe.pipeline import Pipeline

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "models.py").write_text("raise RuntimeError('never imported at spec time')\n")
    (tmp_path / "pipeline.yaml").write_text("stages:\n  train:\n    uses: train\n    params: [train]\n"
                                            "    outs: [models/model.pt]\n")
    (tmp_path / "params.yaml").write_text("train:\n  model: {module: 'pkg.models:Net'}\n")

    def code_deps() -> dict[str, str]:
        stage = Pipeline.load(tmp_path / "pipeline.yaml").spec.stages["train"]
        return {d.module: d.source for d in stage.deps if isinstance(d, CodeDep)}

    assert code_deps() == {"hangar_pipe.stages.train": str(Path(__file__).parents[1] / "hangar_pipe/stages/train.py"),
                           "pkg.models": str(tmp_path / "pkg" / "models.py")}
    (tmp_path / "params.yaml").write_text("train:\n  model: {module: 'pkg.gone:Net'}\n")
    assert list(code_deps()) == ["hangar_pipe.stages.train"], "left to the stage, which says so"
    (tmp_path / "params.yaml").write_text("train: {model: {kind: mlp}}\n")
    assert list(code_deps()) == ["hangar_pipe.stages.train"]
    (tmp_path / "params.yaml").unlink()
    assert list(code_deps()) == ["hangar_pipe.stages.train"]
    (tmp_path / "other.json").write_text('{"fit": {"model": {"module": "pkg.models:Net"}}}')
    (tmp_path / "pipeline.yaml").write_text(
        "stages:\n  train:\n    uses: train\n    with: {params_file: other.json, section: fit}\n"
        "    params: [{other.json: [fit]}]\n    outs: [models/model.pt]\n")
    assert list(code_deps()) == ["hangar_pipe.stages.train", "pkg.models"]
