"""Score the model on the held-out part of the dataset."""

import json

import numpy as np
import yaml

params = yaml.safe_load(open("params.yaml"))["train"]
data = np.load("data/dataset.npz")
model = np.load("model/weights.npz")
n_train = int(len(data["x"]) * params["train_fraction"])
x, y = data["x"][n_train:], data["y"][n_train:]
pred = (x @ model["w"] + model["b"] > 0).astype(np.int64)
metrics = {"accuracy": round(float((pred == y).mean()), 6), "test_samples": int(len(y))}
json.dump(metrics, open("metrics/eval.json", "w"), indent=2)
print(json.dumps(metrics))
