"""The model-against-schema checks of the train and evaluate stages, as plain functions (no torch)."""

from __future__ import annotations

import pytest

from hangar_pipe.core.yamlfile import parse_yaml
from hangar_pipe.errors import UserError
from hangar_pipe.training.shapes import (
    ColumnSpec,
    Where,
    check_classes,
    check_labels,
    check_same_shape,
    resolve_model,
)

DIGITS = ColumnSpec("digits_training_images", (8, 8), "float32")
FLAT = ColumnSpec("mnist_training_images", (64,), "float32")
LABELS = ColumnSpec("mnist_training_labels", (1,), "int64")
CHECKPOINT = Where("models/model.pt", ("model",), fix="retrain it")


def params(text: str) -> Where:
    """Where the model config of params.yaml's train section is, with its lines."""
    return Where("params.yaml", ("train", "model"), parse_yaml(text, "params.yaml"))


def error(config: object, images: ColumnSpec, where: Where | None = None, **kw: bool) -> str:
    with pytest.raises(UserError) as caught:
        resolve_model(config, images, where or params("train: {}\n"), **kw)
    return str(caught.value)


def test_mlp_first_layer_against_the_sample_size() -> None:
    where = params("train:\n  epochs: 1\n  model: {kind: mlp, layers: [784, 10]}\n")
    assert error({"kind": "mlp", "layers": [784, 10]}, DIGITS, where) == (
        "params.yaml:3: train.model.layers[0] is 784 but column digits_training_images holds samples"
        " of shape (8, 8) = 64 features; set it to 64 (or auto)")
    assert resolve_model({"kind": "mlp", "layers": [64, 10]}, DIGITS, where) == {"kind": "mlp", "layers": [64, 10]}


def test_mlp_first_layer_learned() -> None:
    where = params("train: {}\n")
    assert resolve_model({"layers": ["auto", 32, 10]}, DIGITS, where)["layers"] == [64, 32, 10]
    assert resolve_model({"kind": "mlp"}, FLAT, where)["layers"] == [64, 500, 200, 10]


@pytest.mark.parametrize(("config", "message"), [
    ({"layers": [64]}, "train.model.layers is [64]; expected a list of at least two sizes"),
    ({"layers": [64, "ten"]}, "train.model.layers[1] is 'ten'; expected a positive whole number"),
    ({"layers": [64, 0]}, "train.model.layers[1] is 0; expected a positive whole number"),
    ({"layer": [64, 10]}, "train.model.layer is not a key of the mlp model (known: kind, layers)"),
    ({"kind": "rnn"}, "train.model.kind is 'rnn': unknown model kind (mlp or cnn)"),
    ({"kind": "cnn", "channels": [4]}, "train.model.channels is [4]; expected 2 sizes"),
    ("big", "train.model is 'big'; expected a mapping"),
])
def test_bad_model_configs_name_the_key(config: object, message: str) -> None:
    assert message in error(config, FLAT)


def test_cnn_learns_side_and_channels() -> None:
    where = params("train: {}\n")
    cnn = {"kind": "cnn", "channels": [4, 8]}
    learned = {"kind": "cnn", "channels": [4, 8], "classes": 10, "side": 8, "in_channels": 1}
    assert resolve_model(cnn, FLAT, where) == learned
    assert resolve_model(cnn, DIGITS, where) == learned
    rgb = ColumnSpec("rgb", (3, 8, 8), "float32")
    assert resolve_model(cnn, rgb, where) == {**learned, "in_channels": 3}
    assert resolve_model({**cnn, "in_channels": 3}, ColumnSpec("flat_rgb", (192,), "float32"),
                         where) == {**learned, "in_channels": 3}


def test_cnn_side_checked() -> None:
    where = params("train:\n  model:\n    kind: cnn\n    side: 28\n")
    assert error({"kind": "cnn", "side": 28}, FLAT, where) == (
        "params.yaml:4: train.model.side is 28 but column mnist_training_images holds samples of"
        " shape (64,) = 64 features, not 1 × 28 × 28; set it to 8")
    assert error({"kind": "cnn", "side": 28}, DIGITS, where).endswith(
        "train.model.side is 28 but column digits_training_images holds samples of shape (8, 8)"
        " = 64 features; set it to 8")
    assert "train.model.in_channels is 3 but column" in error({"kind": "cnn", "in_channels": 3}, DIGITS)
    assert "train.model.side is 3; the cnn needs images of side 4 or more" in error(
        {"kind": "cnn", "side": 3}, ColumnSpec("tiny", (9,), "float32"))


@pytest.mark.parametrize(("shape", "message"), [
    ((60,), "train.model.side is not set and column x holds samples of shape (60,) = 60 features:"
            " not a square image"),
    ((8, 6), "train.model is a cnn on square images"),
    ((2, 3, 8, 8), "train.model is a cnn on square images"),
    ((9,), "train.model.side is 3 (learned from column x); the cnn needs images of side 4 or more"),
])
def test_cnn_needs_square_images(shape: tuple[int, ...], message: str) -> None:
    assert message in error({"kind": "cnn"}, ColumnSpec("x", shape, "float32"))


def test_a_checkpoint_is_checked_as_built() -> None:
    """Evaluate: nothing is learned; a checkpoint without sizes was built for 28x28 / 784 inputs."""
    assert error({"kind": "mlp", "layers": [36, 10]}, FLAT, CHECKPOINT, learn=False) == (
        "models/model.pt: model.layers[0] is 36 but column mnist_training_images holds samples of"
        " shape (64,) = 64 features; retrain it")
    assert "model.side is 28 but" in error({"kind": "cnn"}, FLAT, CHECKPOINT, learn=False)
    assert "model.layers[0] is 784 but" in error({"kind": "mlp"}, FLAT, CHECKPOINT, learn=False)
    built = {"kind": "cnn", "channels": [4, 8], "classes": 10, "side": 8, "in_channels": 1}
    assert resolve_model(built, DIGITS, CHECKPOINT, learn=False) == built


def test_labels() -> None:
    check_labels(LABELS)
    check_labels(ColumnSpec("y", (), "uint8"))
    with pytest.raises(UserError, match="column y holds float32 labels; a classifier needs integer"):
        check_labels(ColumnSpec("y", (1,), "float32"))
    with pytest.raises(UserError, match=r"samples of shape \(10,\) = 10 features; labels must be one"):
        check_labels(ColumnSpec("y", (10,), "int64"))
    with pytest.raises(UserError, match="column mnist_validation_images holds samples of shape"):
        check_same_shape(FLAT, ColumnSpec("mnist_validation_images", (36,), "float32"))
    check_same_shape(FLAT, ColumnSpec("mnist_validation_images", (64,), "float64"))


def test_classes() -> None:
    where = params("train:\n  model: {layers: [auto, 32, 5]}\n")
    mlp = {"kind": "mlp", "layers": [64, 32, 5]}
    check_classes(mlp, "y", 0, 4, where)
    with pytest.raises(UserError) as caught:
        check_classes(mlp, "y", 0, 9, where)
    assert str(caught.value) == ("params.yaml:2: train.model.layers[2] is 5 but column y holds labels"
                                 " up to 9 (10 classes); set it to 10")
    cnn = {"kind": "cnn", "channels": [4, 8], "classes": 3, "side": 8, "in_channels": 1}
    with pytest.raises(UserError, match="train.model.classes is 3 but column y holds labels up to 3"):
        check_classes(cnn, "y", 0, 3, where)
    with pytest.raises(UserError, match="column y holds the label -1; classes are numbered from 0"):
        check_classes(mlp, "y", -1, 2, where)
