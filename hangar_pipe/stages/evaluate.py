"""Built-in `uses: evaluate`: score a checkpoint from the train stage on test columns.

Writes loss, accuracy, per-class precision and recall (metrics/eval.json) and the confusion
matrix (metrics/confusion.csv: rows are actual classes, columns predicted ones).
"""

from __future__ import annotations

import json

import torch

from hangar_pipe.errors import UserError
from hangar_pipe.stages.common import write_output
from hangar_pipe.stages.train import build_model, evaluate_batches, pick_device
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset


def run(images: str = "mnist_test_images", labels: str = "mnist_test_labels",
        checkpoint: str = "models/model.pt", metrics: str = "metrics/eval.json",
        confusion: str = "metrics/confusion.csv", device: str = "cpu") -> None:
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"evaluate: checkpoint {checkpoint} not found") from None
    model = build_model(saved["model"])
    model.load_state_dict(saved["state_dict"])
    where = pick_device(device)
    model.to(where)
    test_set = ColumnsDataset([images, labels])
    loss, preds, targets = evaluate_batches(model, BatchLoader(test_set, 1024, device=where))
    classes = int(max(int(targets.max()), int(preds.max())) + 1)
    matrix = torch.zeros(classes, classes, dtype=torch.int64)
    matrix.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    diagonal = matrix.diagonal()
    precision = {str(c): (float(diagonal[c]) / float(predicted[c]) if predicted[c] else 0.0)
                 for c in range(classes)}
    recall = {str(c): (float(diagonal[c]) / float(actual[c]) if actual[c] else 0.0)
              for c in range(classes)}
    result = {"loss": loss, "accuracy": float(diagonal.sum()) / len(test_set),
              "test_samples": len(test_set), "data_commit": test_set.commit,
              "train_data_commit": saved.get("data", {}).get("commit"),
              "precision": precision, "recall": recall}
    write_output(metrics, json.dumps(result, indent=2).encode())
    header = "actual\\predicted," + ",".join(str(c) for c in range(classes)) + "\n"
    rows = "".join(f"{c}," + ",".join(str(int(v)) for v in matrix[c]) + "\n" for c in range(classes))
    write_output(confusion, (header + rows).encode())
    print(f"test accuracy {result['accuracy']:.4f}, loss {loss:.4f} on {len(test_set)} samples")
