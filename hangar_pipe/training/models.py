"""The models of the built-in train stage: an MLP, a small CNN, or your own (`module:`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hangar_pipe.errors import UserError
from hangar_pipe.training.custom_model import build_custom, is_custom
from hangar_pipe.training.shapes import BUILT_DEFAULTS, Where


class FlatInput(nn.Sequential):
    """A Sequential that takes samples of any shape: each becomes one float32 vector first.

    A subclass rather than a Flatten layer, so that checkpoints keep their state_dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1).float())  # type: ignore[no-any-return]


def build_model(config: dict[str, Any]) -> nn.Module:
    """A model from a complete config (training.shapes.resolve_model): an MLP (`layers`: sizes
    from input to outputs) or a small CNN on square images (`side`, `in_channels`). Missing sizes
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


def make_model(config: dict[str, Any], where: Where) -> nn.Module:
    """A built-in model, or your own (`{module, kwargs}`: errors name the key at `where`)."""
    return build_custom(config, where) if is_custom(config) else build_model(config)
