"""Early stopping: watch a validation metric, stop when it has not improved for `patience`
validations. Plain data (no torch), so that a resumed run can restore it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hangar_pipe.training.hyperparams import EarlyStopping


@dataclass
class Stopper:
    """The state of early stopping: the best value so far, its epoch, validations since."""

    options: EarlyStopping
    best: float | None = None
    best_epoch: int = 0
    waited: int = 0  # validations without an improvement by more than min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record a validation's value; True when training should stop now."""
        sign = -1.0 if self.options.maximise else 1.0
        if self.best is None or sign * (self.best - value) > self.options.min_delta:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            return False
        self.waited += 1
        return self.waited >= self.options.patience

    def reason(self) -> str:
        """Why it stopped, for the log line."""
        o = self.options
        return (f"{o.metric} did not improve by more than {o.min_delta:g} for {o.patience}"
                f" validation{'s' if o.patience != 1 else ''} (best {self.best:.4f} at epoch {self.best_epoch})")

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "options"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.waited = state["best"], state["best_epoch"], state["waited"]
