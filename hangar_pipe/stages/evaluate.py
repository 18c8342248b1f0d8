"""Built-in `uses: evaluate`: score a checkpoint from the train stage on test columns.

A classifier (`task: classification`, the default): loss, accuracy, per-class precision and
recall (metrics/eval.json) and the confusion matrix (metrics/confusion.csv: rows are actual
classes, columns predicted ones). A regression model: loss (MSE), MAE and RMSE, and in the
confusion file's place a table of MAE and RMSE per output value (so that a pipeline declaring
it keeps working; name it with `with: {confusion: metrics/errors.csv}`). Before reading the
data, the checkpoint's model is checked against the test columns' schemas (training.shapes).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import torch
from torch import nn

from hangar_pipe.core.sizes import parse_size
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.hangar.store import HangarStore, short
from hangar_pipe.stages.common import write_output
from hangar_pipe.training.custom_model import build_custom, custom_config, custom_outputs, is_custom
from hangar_pipe.training.device import pick_device
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset
from hangar_pipe.training.models import build_model
from hangar_pipe.training.shapes import (
    Outputs,
    Where,
    check_classes,
    check_labels,
    check_target_size,
    check_targets,
    model_outputs,
    read_specs,
    resolve_model,
)
from hangar_pipe.training.tasks import CLASSIFICATION, Scores, score
from hangar_pipe.training.threads import use_threads


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
                  ) -> tuple[nn.Module, Outputs, Where]:
    """The checkpoint's model, built and checked against the test columns' schemas (no data read):
    a built-in model by its config, your own (`module:`) by one zero sample through it."""
    if not isinstance(saved, dict) or "model" not in saved or "state_dict" not in saved:
        raise UserError(f"evaluate: {checkpoint} is not a checkpoint of the train stage")
    where = Where(checkpoint, ("model",),
                  fix="evaluate it on columns shaped like its training data, or retrain it")
    task = saved.get("task", CLASSIFICATION)
    repo, commit = pinned_commit()
    specs = read_specs(repo, commit, [images, labels])
    if is_custom(saved["model"]):
        config = custom_config(saved["model"], where)
        model = build_custom(config, where)
        outputs = custom_outputs(model, config, specs[images], where, classifier=task == CLASSIFICATION)
    else:
        config = resolve_model(saved["model"], specs[images], where, learn=False)
        model, outputs = build_model(config), model_outputs(config)
    if task == CLASSIFICATION:
        check_labels(specs[labels])
    else:
        check_targets(specs[labels])
        check_target_size(outputs, specs[labels], where)
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise where.at((), f"its weights do not fit the model built from it ({first}); retrain it") from exc
    return model, outputs, where


Results = tuple[dict[str, float], dict[str, Any], str]  # (first metrics, last metrics, the CSV table)


def classification_results(scores: Scores, test_set: ColumnsDataset) -> Results:
    """Loss and accuracy; per-class precision and recall; the confusion matrix as CSV."""
    assert scores.preds is not None and scores.actual is not None
    preds, targets = scores.preds, scores.actual
    classes = int(max(int(targets.max()), int(preds.max())) + 1)
    matrix = torch.zeros(classes, classes, dtype=torch.int64)
    matrix.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    diagonal = matrix.diagonal()
    precision = {str(c): (float(diagonal[c]) / float(predicted[c]) if predicted[c] else 0.0)
                 for c in range(classes)}
    recall = {str(c): (float(diagonal[c]) / float(actual[c]) if actual[c] else 0.0)
              for c in range(classes)}
    header = "actual\\predicted," + ",".join(str(c) for c in range(classes)) + "\n"
    rows = "".join(f"{c}," + ",".join(str(int(v)) for v in matrix[c]) + "\n" for c in range(classes))
    head = {"loss": scores.loss, "accuracy": float(diagonal.sum()) / len(test_set)}
    return head, {"precision": precision, "recall": recall}, header + rows


def regression_results(scores: Scores) -> Results:
    """Loss (MSE), MAE and RMSE over every target value; per output value, MAE and RMSE as CSV
    (written where classification writes its confusion matrix)."""
    assert scores.abs_errors is not None and scores.sq_errors is not None
    n = max(1, scores.samples)
    rows = "".join(f"{i},{float(a) / n!r},{math.sqrt(float(q) / n)!r}\n"
                   for i, (a, q) in enumerate(zip(scores.abs_errors, scores.sq_errors)))
    return scores.metrics(), {}, "output,mae,rmse\n" + rows


def run(images: str = "mnist_test_images", labels: str = "mnist_test_labels",
        checkpoint: str = "models/model.pt", metrics: str = "metrics/eval.json",
        confusion: str = "metrics/confusion.csv", device: str = "cpu", memory_budget: str | int | None = None
        ) -> None:
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"evaluate: checkpoint {checkpoint} not found") from None
    model, outputs, where = checked_model(saved, checkpoint, images, labels)
    task = saved.get("task", CLASSIFICATION)
    try:
        on = pick_device(device)
    except UserError as exc:
        raise UserError(f"evaluate: {exc.message}") from None
    model.to(on)
    threads = use_threads()
    if memory_budget is not None and not parse_size(memory_budget):
        raise UserError(f"evaluate: memory_budget {memory_budget!r} is not a size (such as 4GiB or 500MB)")
    test_set = ColumnsDataset([images, labels], memory_budget=memory_budget)
    if len(test_set) and task == CLASSIFICATION:
        targets = test_set.column(1)
        check_classes(outputs, labels, int(targets.min()), int(targets.max()), where)
    scores = score(model, BatchLoader(test_set, 1024, device=on), task)
    head, tail, table = (classification_results(scores, test_set) if task == CLASSIFICATION
                    else regression_results(scores))
    mismatch = training_data_mismatch(saved.get("data") or {}, test_set)
    if mismatch:
        print(f"evaluate: warning: the model was trained on data commit {short(str(mismatch['trained_on']))};"
              f" at {short(test_set.commit)}, evaluated here, its training columns differ"
              f" ({', '.join(f'{c} {w}' for c, w in mismatch['columns'].items())}): rerun train first",
              file=sys.stderr)
    result = {**head, "test_samples": len(test_set), "threads": threads, "data_commit": test_set.commit,
              "train_data_commit": saved.get("data", {}).get("commit"),
              "trained_on_this_data": mismatch is None, **({"data_mismatch": mismatch} if mismatch else {}),
              **tail}
    write_output(metrics, json.dumps(result, indent=2).encode())
    write_output(confusion, table.encode())
    said = ", ".join(f"{k} {v:.4f}" for k, v in head.items() if k != "loss")
    print(f"test {said}, loss {scores.loss:.4f} on {len(test_set)} samples")
