"""Your own model: `model: {module: "pkg.models:Net", kwargs: {...}}` in the train params.

`pkg.models` is imported from the stage's folder or the project root (both are on PYTHONPATH in
the stage's process); `Net` is an `nn.Module` class, or a function returning a module, called
with `kwargs`. hpipe tracks the module's source file as a code dependency (its spec-time hook in
`hangar_pipe.stages`), so editing it reruns the stage.

Before any data is read, one zero sample shaped like the image column goes through the model
(eval mode, no gradients; lazy layers are initialised by it) to learn how many values it
outputs: a classifier must output (batch, classes), a regression model one value per target
value. The model receives float32 tensors shaped (batch, *the column's sample shape).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
from torch import nn

from hangar_pipe.errors import did_you_mean
from hangar_pipe.training.shapes import ColumnSpec, Outputs, Where

KEYS = ("module", "kwargs")


def is_custom(config: Any) -> bool:
    """Whether a model config names your own model (`module:`) rather than a built-in kind."""
    return isinstance(config, dict) and "module" in config


def custom_config(config: dict[str, Any], where: Where) -> dict[str, Any]:
    """The checked config: `module` as 'package.module:Name', `kwargs` a mapping ({} if left out)."""
    for key in config:
        if key not in KEYS:
            extra = "; a model is a built-in kind (kind:) or your own (module:), not both" \
                if key in ("kind", "layers", "channels") else did_you_mean(str(key), KEYS)
            raise where.at((key,), f"unknown key for your own model (known: {', '.join(KEYS)}){extra}")
    target = config["module"]
    module, _, name = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not all(p.isidentifier() for p in module.split(".")) or not name.isidentifier():
        raise where.at(("module",), f"expected 'package.module:Name', got {target!r}")
    kwargs = config.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise where.at(("kwargs",), f"expected a mapping of keyword arguments, got {kwargs!r}")
    return {"module": target, "kwargs": kwargs}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _factory(target: str, where: Where) -> Any:
    """The class or function `package.module:Name` names, imported; one line if it cannot be."""
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise where.at(("module",), f"cannot import '{module_name}' ({_one_line(exc)})") from exc
    except Exception as exc:  # the user's module failed while it was imported
        raise where.at(("module",), f"importing '{module_name}' failed: {_one_line(exc)}") from exc
    if not hasattr(module, name):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise where.at(("module",), f"module '{module_name}' has no attribute '{name}'"
                                    f"{did_you_mean(name, names)}")
    factory = getattr(module, name)
    if isinstance(factory, nn.Module) or not callable(factory):
        what = "a model instance" if isinstance(factory, nn.Module) else type(factory).__name__
        raise where.at(("module",), f"{target} is {what}; name an nn.Module class or a function"
                                    " that returns one")
    return factory


def build_custom(config: dict[str, Any], where: Where) -> nn.Module:
    """Your model, built by calling its class or function with its kwargs (torch's RNG seeded)."""
    target, kwargs = config["module"], config.get("kwargs") or {}
    factory = _factory(target, where)
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise where.at(("kwargs",), f"{target}(**kwargs) failed: {_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise where.at(("module",), f"{target} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def custom_outputs(model: nn.Module, config: dict[str, Any], images: ColumnSpec, where: Where,
                   *, classifier: bool) -> Outputs:
    """The values the model outputs per sample, from one zero sample shaped like `images`."""
    target, shape = config["module"], (1, *images.shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape, dtype=torch.float32))
    except Exception as exc:
        raise where.error((), f"fails on one sample shaped like column {images.name}, {shape}"
                              f" ({target}): {_one_line(exc)}") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise where.error((), f"returns {type(out).__name__} ({target}); it must return one tensor")
    if classifier and out.dim() != 2:
        raise where.error((), f"returns shape {tuple(out.shape)} for one sample ({target});"
                              " a classifier returns (batch, classes)")
    if out.dim() < 1 or out.shape[0] != 1:
        raise where.error((), f"returns shape {tuple(out.shape)} for one sample ({target});"
                              " the first dimension must be the batch")
    return Outputs(math.prod(out.shape[1:]))
