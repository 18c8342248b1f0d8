"""What a model learns: classes (cross-entropy, accuracy) or values (mean squared error, MAE,
RMSE). The loss of a batch for training, and the scores of a whole pass for validation and the
evaluate stage."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hangar_pipe.training.device import Loader
from hangar_pipe.training.precision import Precision

CLASSIFICATION, REGRESSION = "classification", "regression"


def batch_loss(task: str) -> nn.Module:
    """The mean loss of a batch: `loss(outputs, targets as loaded)`."""
    return nn.CrossEntropyLoss() if task == CLASSIFICATION else _MeanSquaredError()


class _MeanSquaredError(nn.Module):
    """MSE between the outputs and targets of any shape, one value per output (as float32)."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out.reshape(len(out), -1).float(), y.reshape(len(y), -1).float())


def targets(task: str, y: torch.Tensor) -> torch.Tensor:
    """Targets as the loss takes them: class indices, or the values as loaded."""
    return y.reshape(-1).long() if task == CLASSIFICATION else y


@dataclass
class Scores:
    """A pass over a loader: the mean loss; predicted and actual classes (classification), or
    the sums of absolute and squared errors of each output value (regression)."""

    task: str
    loss: float
    samples: int
    preds: torch.Tensor | None = None
    actual: torch.Tensor | None = None
    abs_errors: torch.Tensor | None = None  # per output value, summed over samples (float64)
    sq_errors: torch.Tensor | None = None

    def metrics(self) -> dict[str, float]:
        """loss and accuracy, or loss, mae and rmse (over every value of every sample)."""
        if self.preds is not None and self.actual is not None:
            return {"loss": self.loss, "accuracy": float((self.preds == self.actual).float().mean())}
        assert self.abs_errors is not None and self.sq_errors is not None
        values = max(1, self.samples * self.abs_errors.numel())
        return {"loss": self.loss, "mae": float(self.abs_errors.sum()) / values,
                "rmse": math.sqrt(float(self.sq_errors.sum()) / values)}


def score(model: nn.Module, loader: Loader, task: str, precision: Precision | None = None) -> Scores:
    """The model's scores over a loader, in eval mode, without gradients."""
    precision = precision or Precision()
    model.eval()
    with torch.no_grad():
        if task == CLASSIFICATION:
            return _classify(model, loader, precision)
        return _regress(model, loader, precision)


def _classify(model: nn.Module, loader: Loader, precision: Precision) -> Scores:
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, preds, actual = 0.0, [], []
    for x, y in loader:
        y = y.reshape(-1).long()
        with precision.autocast():
            out = model(x.float())
        total += float(loss_fn(out.float(), y))
        preds.append(out.argmax(1).cpu())
        actual.append(y.cpu())
    n = len(loader.dataset)
    return Scores(CLASSIFICATION, total / max(1, n), n, torch.cat(preds), torch.cat(actual))


def _regress(model: nn.Module, loader: Loader, precision: Precision) -> Scores:
    abs_sum: torch.Tensor | None = None
    sq_sum: torch.Tensor | None = None
    for x, y in loader:
        with precision.autocast():
            out = model(x.float())
        diff = (out.reshape(len(out), -1).float() - y.reshape(len(y), -1).float()).double()
        a, s = diff.abs().sum(0).cpu(), diff.square().sum(0).cpu()
        abs_sum = a if abs_sum is None else abs_sum + a
        sq_sum = s if sq_sum is None else sq_sum + s
    n = len(loader.dataset)
    width = math.prod(loader.dataset.shapes[1])
    abs_sum = abs_sum if abs_sum is not None else torch.zeros(width, dtype=torch.float64)
    sq_sum = sq_sum if sq_sum is not None else torch.zeros(width, dtype=torch.float64)
    loss = float(sq_sum.sum()) / max(1, n * width)
    return Scores(REGRESSION, loss, n, abs_errors=abs_sum, sq_errors=sq_sum)
