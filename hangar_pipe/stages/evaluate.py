"""Built-in `uses: evaluate`: score a checkpoint from the train stage on test columns.

Writes loss, accuracy, per-class precision and recall (metrics/eval.json) and the confusion
matrix (metrics/confusion.csv: rows are actual classes, columns predicted ones). Before reading
the data, the checkpoint's model is checked against the test columns' schemas (training.shapes).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from hangar_pipe.errors import UserError
from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.hangar.store import HangarStore, short
from hangar_pipe.stages.common import write_output
from hangar_pipe.stages.train import build_model, evaluate_batches, pick_device
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset
from hangar_pipe.training.shapes import Where, check_classes, check_labels, read_specs, resolve_model


def training_data_mismatch(trained_on: dict[str, Any], test_set: ColumnsDataset) -> dict[str, Any] | None:
    """How the columns the checkpoint was trained on differ at the commit evaluated, or None.

    Another commit with the same training columns is no mismatch: the data is what counts.
    """
    store = HangarStore(test_set.repo)
    try:
        now = {col: store.column(test_set.commit, col) for col in trained_on.get("columns") or {}}
    finally:
        store.close()
    differ = {col: "missing" if state is None else "changed" for col, state in now.items()
              if state is None or state.fingerprint != trained_on["columns"][col]}
    if not differ:
        return None
    return {"trained_on": trained_on.get("commit"), "evaluated_at": test_set.commit, "columns": differ}


def checked_model(saved: Any, checkpoint: str, images: str, labels: str
                  ) -> tuple[dict[str, Any], Where]:
    """The checkpoint's model config, checked against the test columns' schemas (no data read)."""
    if not isinstance(saved, dict) or "model" not in saved or "state_dict" not in saved:
        raise UserError(f"evaluate: {checkpoint} is not a checkpoint of the train stage")
    where = Where(checkpoint, ("model",),
                  fix="evaluate it on columns shaped like its training data, or retrain it")
    repo, commit = pinned_commit()
    specs = read_specs(repo, commit, [images, labels])
    config = resolve_model(saved["model"], specs[images], where, learn=False)
    check_labels(specs[labels])
    return config, where


def run(images: str = "mnist_test_images", labels: str = "mnist_test_labels",
        checkpoint: str = "models/model.pt", metrics: str = "metrics/eval.json",
        confusion: str = "metrics/confusion.csv", device: str = "cpu") -> None:
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"evaluate: checkpoint {checkpoint} not found") from None
    config, where = checked_model(saved, checkpoint, images, labels)
    model = build_model(config)
    model.load_state_dict(saved["state_dict"])
    on = pick_device(device)
    model.to(on)
    test_set = ColumnsDataset([images, labels])
    if len(test_set):
        check_classes(config, labels, int(test_set.tensors[1].min()), int(test_set.tensors[1].max()), where)
    loss, preds, targets = evaluate_batches(model, BatchLoader(test_set, 1024, device=on))
    classes = int(max(int(targets.max()), int(preds.max())) + 1)
    matrix = torch.zeros(classes, classes, dtype=torch.int64)
    matrix.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    diagonal = matrix.diagonal()
    precision = {str(c): (float(diagonal[c]) / float(predicted[c]) if predicted[c] else 0.0)
                 for c in range(classes)}
    recall = {str(c): (float(diagonal[c]) / float(actual[c]) if actual[c] else 0.0)
              for c in range(classes)}
    mismatch = training_data_mismatch(saved.get("data") or {}, test_set)
    if mismatch:
        print(f"evaluate: warning: the model was trained on data commit {short(str(mismatch['trained_on']))};"
              f" at {short(test_set.commit)}, evaluated here, its training columns differ"
              f" ({', '.join(f'{c} {w}' for c, w in mismatch['columns'].items())}): rerun train first",
              file=sys.stderr)
    result = {"loss": loss, "accuracy": float(diagonal.sum()) / len(test_set),
              "test_samples": len(test_set), "data_commit": test_set.commit,
              "train_data_commit": saved.get("data", {}).get("commit"),
              "trained_on_this_data": mismatch is None, **({"data_mismatch": mismatch} if mismatch else {}),
              "precision": precision, "recall": recall}
    write_output(metrics, json.dumps(result, indent=2).encode())
    header = "actual\\predicted," + ",".join(str(c) for c in range(classes)) + "\n"
    rows = "".join(f"{c}," + ",".join(str(int(v)) for v in matrix[c]) + "\n" for c in range(classes))
    write_output(confusion, (header + rows).encode())
    print(f"test accuracy {result['accuracy']:.4f}, loss {loss:.4f} on {len(test_set)} samples")
