"""Check a model config against the schemas of its Hangar columns, before any data is read.

The built-in train and evaluate stages read only the columns' schemas (shape and dtype, from
Hangar's records: cheap) and stop with one line naming the key when the model cannot take the
samples: an MLP's first layer against the sample size, a CNN's image side and channels against
the sample shape, labels that are not one integer per sample, a regression model's outputs
against the size of a target. What the config leaves out (an MLP's first layer `auto`, a CNN's
`side` and `in_channels`) is learned from the schema. Labels are checked against the class count
once they are loaded (the schema does not hold their range). Your own model (`module:`) is
checked the same way, on the output of one zero sample (`training.custom_model`).

No torch or hangar import here: the checks are plain functions of the config and the schemas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hangar_pipe.core.yamlfile import KeyPath, YamlDoc, keypath_str
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.store import HangarStore, short

AUTO = "auto"
#: what a config leaves out: an MLP's first layer is learned from the column (`auto`)
MLP_DEFAULTS: dict[str, Any] = {"layers": [AUTO, 500, 200, 10]}
CNN_DEFAULTS: dict[str, Any] = {"channels": [16, 32], "classes": 10}
#: what a model built before the sizes were learned was built with (checkpoints that lack them)
BUILT_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"layers": [784, 500, 200, 10]},
    "cnn": {"channels": [16, 32], "classes": 10, "side": 28, "in_channels": 1}}
KEYS = {"mlp": ("kind", "layers"), "cnn": ("kind", "channels", "classes", "side", "in_channels")}


@dataclass(frozen=True)
class ColumnSpec:
    """What a column's schema says about every sample: its name, shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    samples: int = 0  # at the commit read

    @property
    def features(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """The bytes of the whole column."""
        return self.samples * self.features * np.dtype(self.dtype).itemsize

    def holds(self) -> str:
        """`column x holds samples of shape (8, 8) = 64 features`, for messages."""
        shape = f"({self.shape[0]},)" if len(self.shape) == 1 else str(self.shape)
        return f"column {self.name} holds samples of shape {shape} = {self.features} features"


def column_spec(store: HangarStore, commit: str, name: str) -> ColumnSpec:
    """A column's sample shape and dtype; a one-line error if it is missing or cannot load in bulk."""
    state = store.column(commit, name)
    if state is None:
        raise UserError(f"column '{name}' not in {store.path} at {short(commit)}")
    schema = state.schema
    kind = (schema["column_type"], schema["column_layout"], schema["schema_type"])
    if kind != ("ndarray", "flat", "fixed_shape"):
        raise UserError(f"column '{name}' {_unbatchable(schema)}: the loader batches flat fixed-shape"
                        " ndarray columns only (pad the samples to one shape when you write them, or read"
                        " them one at a time with hangar_pipe.data.open_columns)")
    return ColumnSpec(name, tuple(int(d) for d in schema["shape"]), str(schema["dtype"]), state.samples)


def _unbatchable(schema: dict[str, Any]) -> str:
    """What a column holds, when it is not one fixed shape: for the error."""
    if schema["column_type"] != "ndarray":
        return f"holds {schema['column_type']} samples"
    if schema["column_layout"] != "flat":
        return f"is a {schema['column_layout']} column (subsamples)"
    return f"holds samples of variable shape (up to {tuple(schema['shape'])})"


def column_specs(store: HangarStore, commit: str, names: list[str]) -> dict[str, ColumnSpec]:
    return {name: column_spec(store, commit, name) for name in names}


def read_specs(repo: Path, commit: str, names: list[str]) -> dict[str, ColumnSpec]:
    """The specs of columns at a commit of the Hangar repository in `repo` (records only)."""
    store = HangarStore(repo)
    try:
        return column_specs(store, commit, names)
    finally:
        store.close()


@dataclass(frozen=True)
class Where:
    """Where a model config came from, to name its keys in errors: a params file or a checkpoint.

    `doc` (a params file read with line numbers) gives `file:line:`; `fix` is the advice for a
    config that cannot be edited (a checkpoint's), instead of "set it to N".
    """

    file: str
    prefix: KeyPath
    doc: YamlDoc | None = None
    fix: str | None = None

    def key(self, key: KeyPath) -> str:
        return keypath_str(self.prefix + key)

    def error(self, key: KeyPath, message: str) -> UserError:
        """`file:line: prefix.key message` as one line."""
        line = self.doc.line(self.prefix + key) if self.doc else None
        return UserError(f"{self.key(key)} {message}", file=self.file, line=line)

    def at(self, key: KeyPath, message: str) -> UserError:
        """`file:line: prefix.key: message` as one line (the key, a colon, then the message)."""
        line = self.doc.line(self.prefix + key) if self.doc else None
        return UserError(message, file=self.file, line=line, key=self.key(key))

    def mismatch(self, key: KeyPath, value: Any, but: str, right: Any | None) -> UserError:
        """`prefix.key is V but <what the data says>; set it to R` (or the checkpoint's advice)."""
        advice = self.fix or (f"set it to {right}" if right is not None else "fix it or reshape the column")
        return self.error(key, f"is {value} but {but}; {advice}")


def _size(value: Any, where: Where, key: KeyPath, *, auto: bool = False) -> int | str:
    if auto and value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or auto" if auto else ""
        raise where.error(key, f"is {value!r}; expected a positive whole number{extra}")
    return value


def _sizes(config: dict[str, Any], name: str, where: Where, count: int | None = None) -> list[Any]:
    sizes = config[name]
    least = count or 2
    if not isinstance(sizes, list) or len(sizes) < least or (count and len(sizes) != count):
        want = f"{count} sizes" if count else "a list of at least two sizes (input, ..., classes)"
        raise where.error((name,), f"is {sizes!r}; expected {want}")
    return [_size(v, where, (name, i), auto=(i == 0 and count is None)) for i, v in enumerate(sizes)]


def model_config(config: Any, where: Where, *, learn: bool = True) -> dict[str, Any]:
    """The config with its kind's defaults filled in, keys checked; `learn=False`: a built model's."""
    if not isinstance(config, dict):
        raise where.error((), f"is {config!r}; expected a mapping such as {{kind: mlp}}")
    kind = config.get("kind", "mlp")
    if kind not in KEYS:
        raise where.error(("kind",), f"is '{kind}': unknown model kind (mlp or cnn)")
    unknown = sorted(set(config) - set(KEYS[kind]))
    if learn and unknown:
        raise where.error((unknown[0],), f"is not a key of the {kind} model (known: {', '.join(KEYS[kind])})")
    defaults = (MLP_DEFAULTS if kind == "mlp" else CNN_DEFAULTS) if learn else BUILT_DEFAULTS[kind]
    return {"kind": kind, **defaults, **config}


def resolve_model(config: Any, images: ColumnSpec, where: Where, *, learn: bool = True) -> dict[str, Any]:
    """The complete model config for samples like `images`', or a one-line error naming the key.

    `learn`: fill what the config leaves out from the schema (train); otherwise the config is a
    built model's (a checkpoint's) and must fit as it is (evaluate).
    """
    full = model_config(config, where, learn=learn)
    if full["kind"] == "mlp":
        sizes = _sizes(full, "layers", where)
        if sizes[0] == AUTO:
            sizes[0] = images.features
        elif sizes[0] != images.features:
            raise where.mismatch(("layers", 0), sizes[0], images.holds(), f"{images.features} (or auto)")
        return {"kind": "mlp", "layers": sizes}
    return _resolve_cnn(full, images, where)


def _resolve_cnn(full: dict[str, Any], images: ColumnSpec, where: Where) -> dict[str, Any]:
    channels = _sizes(full, "channels", where, count=2)
    classes = _size(full["classes"], where, ("classes",))
    given = {k: _size(full[k], where, (k,)) for k in ("side", "in_channels") if k in full}
    shape = images.shape
    if len(shape) == 1:
        depth = int(given.get("in_channels", 1))
        side = math.isqrt(images.features // depth)
        if "side" in given:
            side = int(given["side"])
            if depth * side * side != images.features:
                raise where.mismatch(("side",), side, f"{images.holds()}, not {depth} × {side} × {side}",
                                     _fitting_side(images.features, depth))
        elif depth * side * side != images.features:
            raise where.error(("side",), f"is not set and {images.holds()}: not a square image;"
                              " set side (and in_channels) or reshape the column")
    elif len(shape) in (2, 3) and shape[-1] == shape[-2]:
        side, depth = shape[-1], (shape[0] if len(shape) == 3 else 1)
        for key, value in (("side", side), ("in_channels", depth)):
            if key in given and given[key] != value:
                raise where.mismatch((key,), given[key], images.holds(), value)
    else:
        raise where.error((), f"is a cnn on square images, (side, side) or (channels, side, side),"
                          f" but {images.holds()}")
    if side < 4:
        learned = "" if "side" in given else f" (learned from column {images.name})"
        raise where.error(("side",), f"is {side}{learned}; the cnn needs images of side 4 or more"
                          " (two 2x2 poolings)")
    return {"kind": "cnn", "channels": channels, "classes": classes, "side": side, "in_channels": depth}


def _fitting_side(features: int, depth: int) -> int | None:
    side = math.isqrt(features // depth)
    return side if depth * side * side == features else None


@dataclass(frozen=True)
class Outputs:
    """How many values a model gives per sample, and the key of its config that sets the number:
    a built-in model's last layer or `classes`; () for your own model (its code sets it)."""

    count: int
    key: KeyPath = ()

    def mismatch(self, where: Where, but: str, right: int) -> UserError:
        """`prefix.key is N but ...; set it to R`, or for your own model `prefix outputs N ...`."""
        if self.key:
            return where.mismatch(self.key, self.count, but, right)
        advice = where.fix or f"make it output {right}"
        return where.error((), f"outputs {self.count} values per sample but {but}; {advice}")


def model_classes(config: dict[str, Any]) -> tuple[KeyPath, int]:
    """(key, number of classes) of a complete model config: its last layer, or `classes`."""
    if config["kind"] == "mlp":
        return ("layers", len(config["layers"]) - 1), int(config["layers"][-1])
    return ("classes",), int(config["classes"])


def model_outputs(model: dict[str, Any] | Outputs) -> Outputs:
    """The outputs of a complete built-in model config (an Outputs is returned as it is)."""
    if isinstance(model, Outputs):
        return model
    key, count = model_classes(model)
    return Outputs(count, key)


def check_labels(labels: ColumnSpec) -> None:
    """Labels must be one integer class per sample (schema only)."""
    if np.dtype(labels.dtype).kind not in "iu":
        raise UserError(f"column {labels.name} holds {labels.dtype} labels; a classifier needs"
                        " integer classes (0, 1, 2, ...)")
    if labels.features != 1:
        raise UserError(f"{labels.holds()}; labels must be one integer class per sample,"
                        " shape (1,) or ()")


def check_same_shape(first: ColumnSpec, other: ColumnSpec) -> None:
    """A validation column must hold samples shaped as the training column's (dtypes are cast)."""
    if first.shape != other.shape:
        raise UserError(f"{other.holds()}, but {first.holds()}; the model needs them alike")


def check_targets(targets: ColumnSpec) -> None:
    """Regression targets: numbers of any fixed shape (cast to float32 for the loss)."""
    if np.dtype(targets.dtype).kind not in "iuf":
        raise UserError(f"column {targets.name} holds {targets.dtype} values; regression targets"
                        " must be numbers")


def check_target_size(model: dict[str, Any] | Outputs, targets: ColumnSpec, where: Where) -> None:
    """A regression model must give one output per target value (the product of its shape)."""
    outputs = model_outputs(model)
    if outputs.count != targets.features:
        shape = f"({targets.shape[0]},)" if len(targets.shape) == 1 else str(targets.shape)
        raise outputs.mismatch(where, f"column {targets.name} holds targets of shape {shape}"
                                      f" = {targets.features} values", targets.features)


def check_classes(model: dict[str, Any] | Outputs, labels: str, low: int, high: int,
                  where: Where) -> None:
    """The labels, low..high as loaded, must be classes the model has: 0 .. classes - 1."""
    outputs = model_outputs(model)
    if low < 0:
        raise UserError(f"column {labels} holds the label {low}; classes are numbered from 0")
    if high >= outputs.count:
        raise outputs.mismatch(where, f"column {labels} holds labels up to {high}"
                                      f" ({high + 1} classes)", high + 1)
