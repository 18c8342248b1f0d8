"""The optimizer and learning-rate schedule of a run, from its checked hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hangar_pipe.training.hyperparams import Hyperparams


def make_optimizer(model: nn.Module, hp: Hyperparams) -> torch.optim.Optimizer:
    """SGD, Adam or AdamW over the model's parameters, with every setting given explicitly."""
    o, params = hp.optimizer_options, model.parameters()
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                               dampening=o["dampening"], nesterov=o["nesterov"])
    adam = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
    return adam(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(o["betas"]),
                eps=o["eps"], amsgrad=o["amsgrad"])


@dataclass
class Schedule:
    """A torch LR scheduler and when it steps: after every batch (onecycle) or every epoch."""

    scheduler: Any  # torch.optim.lr_scheduler.LRScheduler
    per_batch: bool

    def after_batch(self) -> None:
        if self.per_batch:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if not self.per_batch:
            self.scheduler.step()


def make_schedule(optimizer: torch.optim.Optimizer, hp: Hyperparams, batches: int) -> Schedule | None:
    """The scheduler of `hp.scheduler` (None without one); `batches`: per epoch, for onecycle."""
    s = hp.scheduler
    if s is None:
        return None
    o, lr = s.options, torch.optim.lr_scheduler
    if s.kind == "step":
        return Schedule(lr.StepLR(optimizer, step_size=o["step_size"], gamma=o["gamma"]), False)
    if s.kind == "cosine":
        return Schedule(lr.CosineAnnealingLR(optimizer, T_max=o["t_max"], eta_min=o["eta_min"]), False)
    return Schedule(lr.OneCycleLR(
        optimizer, max_lr=o["max_lr"], total_steps=hp.epochs * max(1, batches),
        pct_start=o["pct_start"], anneal_strategy=o["anneal_strategy"], div_factor=o["div_factor"],
        final_div_factor=o["final_div_factor"], three_phase=o["three_phase"],
        cycle_momentum=o["cycle_momentum"], base_momentum=o["base_momentum"],
        max_momentum=o["max_momentum"]), True)
