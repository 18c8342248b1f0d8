"""Mixed precision (`amp: true`): autocast on CUDA, in bfloat16 where the GPU supports it, else
float16 with a gradient scaler. On the CPU training stays float32, so that its results are the
bytes of a run without `amp`; the stage says so in one line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Precision:
    """How the loop computes: float32, or autocast to `dtype` (with a scaler for float16)."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None  # None: float32, no autocast
    scaler: Any = None  # torch.amp.GradScaler for float16

    @classmethod
    def on(cls, device: torch.device, amp: bool) -> Precision:
        if not amp or device.type != "cuda":
            return cls(device.type)
        if torch.cuda.is_bf16_supported():
            return cls("cuda", torch.bfloat16)
        return cls("cuda", torch.float16, torch.amp.GradScaler("cuda"))

    @property
    def name(self) -> str:
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: nn.Module,
             grad_clip: float | None) -> None:
        """Backward pass, optional clipping of the gradients' total norm, optimizer step."""
        if self.scaler is None:
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if grad_clip is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
