"""The built-in train stage's hyperparameters: a params section read, checked and completed.

Every key has a rule (what values it takes) and a default; the optimizer, the scheduler and early
stopping are mappings with keys of their own, each checked too. A bad value or an unknown key
is one line naming the key, `params.yaml:7: train.scheduler.gama: unknown key (known: ...)`.
The result (`Hyperparams`) holds the effective values, defaults filled in, and `record()` gives
them as plain data for the checkpoint and the metrics file. No torch here: `training.optim`
turns these values into torch objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hangar_pipe.core.params import load_params, params_format
from hangar_pipe.core.sizes import parse_size
from hangar_pipe.core.yamlfile import KeyPath, load_yaml
from hangar_pipe.errors import UserError, did_you_mean
from hangar_pipe.training.shapes import Where

TASKS = ("classification", "regression")
#: optimizer kind -> its own keys (`optimizer: {kind: adam, eps: 1.0e-7}`), with torch's defaults
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"nesterov": False, "dampening": 0.0},
    "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False},
    "adamw": {"betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False},
}
#: `weight_decay` when the section leaves it out: torch's default for each optimizer
WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 0.01}
#: scheduler kind -> its keys, with defaults (None: required, or filled from another setting)
SCHEDULERS: dict[str, dict[str, Any]] = {
    "step": {"step_size": None, "gamma": 0.1},  # step_size is required
    "cosine": {"t_max": None, "eta_min": 0.0},  # t_max: the epochs
    "onecycle": {"max_lr": None, "pct_start": 0.3, "anneal_strategy": "cos", "div_factor": 25.0,
                 "final_div_factor": 1e4, "three_phase": False, "cycle_momentum": True,
                 "base_momentum": 0.85, "max_momentum": 0.95},  # max_lr: lr
}
#: the validation metrics of each task (what early stopping may watch); accuracy is maximised
METRICS = {"classification": ("val_loss", "val_accuracy"),
           "regression": ("val_loss", "val_mae", "val_rmse")}
EARLY_STOPPING: dict[str, Any] = {"metric": "val_loss", "patience": 3, "min_delta": 0.0}
DEFAULTS: dict[str, Any] = {
    "model": {"kind": "mlp", "layers": ["auto", 500, 200, 10]}, "task": "classification",
    "optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": None, "epochs": 10,
    "batch_size": 32, "seed": 0, "device": "auto", "scheduler": None, "grad_clip": None,
    "early_stopping": None, "val_every": 1, "amp": False, "distributed": None,
    "memory_budget": "4GiB",
}

Rule = tuple[Callable[[Any], bool], str]  # (accepts a value, what it expects: for the error)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


POSITIVE: Rule = (lambda v: _number(v) and v > 0, "a positive number")
NON_NEGATIVE: Rule = (lambda v: _number(v) and v >= 0, "a number >= 0")
FRACTION: Rule = (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1")
COUNT: Rule = (lambda v: _whole(v) and v >= 1, "a positive whole number")
WHOLE: Rule = (lambda v: _whole(v) and v >= 0, "a whole number >= 0")
FLAG: Rule = (lambda v: isinstance(v, bool), "true or false")
NAME: Rule = (lambda v: isinstance(v, str) and bool(v.strip()), "a name")
SIZE: Rule = (lambda v: bool(parse_size(v)), "a size such as 4GiB or 500MB")
BETAS: Rule = (lambda v: isinstance(v, list) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
               "two numbers in [0, 1), such as [0.9, 0.999]")


def one_of(*names: str) -> Rule:
    return (lambda v: v in names, " or ".join(names))


def optional(rule: Rule) -> Rule:
    return (lambda v: v is None or rule[0](v), f"{rule[1]} or null")


RULES: dict[str, Rule] = {
    "task": one_of(*TASKS), "lr": POSITIVE, "momentum": NON_NEGATIVE,
    "weight_decay": optional(NON_NEGATIVE), "epochs": COUNT, "batch_size": COUNT, "seed": WHOLE,
    "device": NAME, "grad_clip": optional(POSITIVE), "val_every": COUNT, "amp": FLAG,
    "memory_budget": SIZE,
}
OPTIMIZER_RULES: dict[str, Rule] = {"nesterov": FLAG, "dampening": NON_NEGATIVE, "betas": BETAS,
                                    "eps": POSITIVE, "amsgrad": FLAG}
SCHEDULER_RULES: dict[str, Rule] = {
    "step_size": COUNT, "gamma": POSITIVE, "t_max": COUNT, "eta_min": NON_NEGATIVE,
    "max_lr": POSITIVE, "pct_start": FRACTION, "anneal_strategy": one_of("cos", "linear"),
    "div_factor": POSITIVE, "final_div_factor": POSITIVE, "three_phase": FLAG,
    "cycle_momentum": FLAG, "base_momentum": NON_NEGATIVE, "max_momentum": NON_NEGATIVE,
}
EARLY_STOPPING_RULES: dict[str, Rule] = {"patience": COUNT, "min_delta": NON_NEGATIVE}


@dataclass(frozen=True)
class Scheduler:
    """A learning-rate schedule: its kind and every one of its keys (defaults filled in)."""

    kind: str
    options: dict[str, Any]

    @property
    def per_batch(self) -> bool:
        """onecycle steps after every batch; step and cosine after every epoch."""
        return self.kind == "onecycle"


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when `metric` has not improved by more than `min_delta` for `patience` validations."""

    metric: str
    patience: int
    min_delta: float

    @property
    def maximise(self) -> bool:
        return self.metric == "val_accuracy"


@dataclass(frozen=True)
class Hyperparams:
    """The effective settings of one training run (the section over the defaults)."""

    model: Any  # checked against the columns later (training.shapes, training.custom_model)
    task: str
    optimizer: str
    optimizer_options: dict[str, Any]
    lr: float
    momentum: float
    weight_decay: float
    epochs: int
    batch_size: int
    seed: int
    device: str
    scheduler: Scheduler | None
    grad_clip: float | None
    early_stopping: EarlyStopping | None
    val_every: int
    amp: bool
    distributed: Any = None  # checked by training.distributed.settings (with the device)
    memory_budget: int = 4 * 2**30  # bytes of column data loaded whole (train and validation sets)

    def record(self) -> dict[str, Any]:
        """Every setting as plain data (the checkpoint's `params`, the metrics' `hyperparameters`)."""
        s, e = self.scheduler, self.early_stopping
        scheduler = None if s is None else {"kind": s.kind, **s.options}
        stopping = None if e is None else {"metric": e.metric, "patience": e.patience,
                                           "min_delta": e.min_delta}
        return {"model": self.model, "task": self.task,
                "optimizer": {"kind": self.optimizer, **self.optimizer_options}, "lr": self.lr,
                "momentum": self.momentum, "weight_decay": self.weight_decay, "epochs": self.epochs,
                "batch_size": self.batch_size, "seed": self.seed, "device": self.device,
                "scheduler": scheduler, "grad_clip": self.grad_clip, "early_stopping": stopping,
                "val_every": self.val_every, "amp": self.amp, "distributed": self.distributed,
                "memory_budget": self.memory_budget}


def read_section(params_file: str, section: str) -> tuple[dict[str, Any], Where]:
    """The section's mapping, and where it is (YAML is read with line numbers, for errors)."""
    doc = None
    if params_format(params_file) == "YAML":
        doc = load_yaml(Path(params_file), params_file)
        data = doc.data or {}
    else:  # JSON, TOML: as a stage's `params:` reads them
        data = load_params(Path(params_file), params_file) or {}
    if not isinstance(data, dict) or section not in data or not isinstance(data[section], dict):
        raise UserError(f"train: section '{section}' not found in {params_file}")
    return data[section], Where(params_file, (section,), doc)


def hyperparameters(params_file: str, section: str) -> tuple[Hyperparams, Where]:
    """The checked settings of a params section, and where the section is (for later errors)."""
    data, where = read_section(params_file, section)
    return parse(data, where), where


def parse(data: dict[str, Any], where: Where) -> Hyperparams:
    """Check every key of a section (`where` names it) and fill in the defaults."""
    _known_keys(data, list(DEFAULTS), where, ())
    values = {**DEFAULTS, **data}
    for key, rule in RULES.items():
        check(values[key], rule, where, (key,))
    kind, options = _optimizer(values["optimizer"], values["momentum"], where)
    decay = WEIGHT_DECAY[kind] if values["weight_decay"] is None else values["weight_decay"]
    return Hyperparams(
        model=values["model"], task=values["task"], optimizer=kind, optimizer_options=options,
        lr=values["lr"], momentum=values["momentum"], weight_decay=decay, epochs=values["epochs"],
        batch_size=values["batch_size"], seed=values["seed"], device=values["device"],
        scheduler=_scheduler(values["scheduler"], values, where), grad_clip=values["grad_clip"],
        early_stopping=_early_stopping(values["early_stopping"], values["task"], where),
        val_every=values["val_every"], amp=values["amp"], distributed=values["distributed"],
        memory_budget=int(parse_size(values["memory_budget"]) or 0))


def check(value: Any, rule: Rule, where: Where, key: KeyPath) -> None:
    """A value against its rule: `file:line: section.key: expected a positive number, got 'x'`."""
    accepts, expected = rule
    if accepts(value):
        return
    hint = ""
    if isinstance(value, str) and _number_text(value):
        hint = f" (YAML reads {value} as text: write it with a dot, such as {_dotted(value)})"
    raise where.at(key, f"expected {expected}, got {value!r}{hint}")


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dotted(text: str) -> str:
    """'1e-3' -> '1.0e-3', the form YAML 1.1 (PyYAML) reads as a number."""
    mantissa, _, exponent = text.lower().partition("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}" if exponent else text


def _known_keys(data: dict[str, Any], known: list[str], where: Where, key: KeyPath) -> None:
    for name in data:
        if name not in known:
            raise where.at(key + (name,), f"unknown key (known: {', '.join(known)})"
                                          f"{did_you_mean(str(name), known)}")


def _kind(value: Any, kinds: dict[str, Any], where: Where, key: KeyPath) -> tuple[str, dict[str, Any]]:
    """`name` or `{kind: name, ...}` -> (name, the other keys); unknown kinds are one line."""
    body: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
    kind = body.pop("kind", None) if isinstance(value, dict) else value
    at = key + ("kind",) if isinstance(value, dict) else key
    if not isinstance(kind, str) or kind not in kinds:
        choices = " | ".join(kinds)
        if isinstance(value, dict) and kind is None:
            raise where.at(key, f"needs a kind ({choices})")
        raise where.at(at, f"unknown {key[-1]} {kind!r} ({choices}){did_you_mean(str(kind), list(kinds))}")
    _known_keys(body, ["kind", *kinds[kind]], where, key)
    return str(kind), body


def _optimizer(value: Any, momentum: float, where: Where) -> tuple[str, dict[str, Any]]:
    kind, given = _kind(value, OPTIMIZERS, where, ("optimizer",))
    for name, option in given.items():
        check(option, OPTIMIZER_RULES[name], where, ("optimizer", name))
    options = {**OPTIMIZERS[kind], **given}
    if kind != "sgd" and momentum:
        raise where.at(("momentum",), f"is SGD's; {kind} has betas instead"
                                      f" (optimizer: {{kind: {kind}, betas: [0.9, 0.999]}})")
    if options.get("nesterov") and (momentum <= 0 or options["dampening"] != 0):
        raise where.at(("optimizer", "nesterov"), "needs momentum > 0 and dampening 0")
    return kind, options


def _scheduler(value: Any, values: dict[str, Any], where: Where) -> Scheduler | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise where.at(("scheduler",), f"expected a mapping such as {{kind: cosine}}, got {value!r}")
    kind, given = _kind(value, SCHEDULERS, where, ("scheduler",))
    for name, option in given.items():
        check(option, SCHEDULER_RULES[name], where, ("scheduler", name))
    filled = {"t_max": values["epochs"], "max_lr": values["lr"]}
    options = {k: given.get(k, filled.get(k) if v is None else v) for k, v in SCHEDULERS[kind].items()}
    if kind == "step" and options["step_size"] is None:
        raise where.at(("scheduler",), "step needs step_size (the epochs between two lr drops)")
    return Scheduler(kind, options)


def _early_stopping(value: Any, task: str, where: Where) -> EarlyStopping | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise where.at(("early_stopping",), f"expected a mapping such as {{patience: 3}}, got {value!r}")
    _known_keys(value, list(EARLY_STOPPING), where, ("early_stopping",))
    given = {**EARLY_STOPPING, **value}
    metrics = METRICS[task]
    if given["metric"] not in metrics:
        raise where.at(("early_stopping", "metric"), f"unknown metric {given['metric']!r} for"
                       f" {task} ({' | '.join(metrics)}){did_you_mean(str(given['metric']), metrics)}")
    for name, rule in EARLY_STOPPING_RULES.items():
        check(given[name], rule, where, ("early_stopping", name))
    return EarlyStopping(given["metric"], given["patience"], given["min_delta"])
