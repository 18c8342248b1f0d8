"""Fit a logistic regression by gradient descent on data/dataset.npz (lr and epochs from params.yaml)."""

import json
import pathlib

import numpy as np
import yaml

params = yaml.safe_load(open("params.yaml"))["train"]
data = np.load("data/dataset.npz")
x, y = data["x"], data["y"]
n_train = int(len(x) * params["train_fraction"])
xt, yt = x[:n_train], y[:n_train]
w, b = np.zeros(x.shape[1]), 0.0
history = []
for epoch in range(params["epochs"]):
    p = 1 / (1 + np.exp(-(xt @ w + b)))
    loss = float(-np.mean(yt * np.log(p + 1e-12) + (1 - yt) * np.log(1 - p + 1e-12)))
    w -= params["lr"] * xt.T @ (p - yt) / len(xt)
    b -= params["lr"] * float(np.mean(p - yt))
    history.append((epoch, loss))
pathlib.Path("model").mkdir(exist_ok=True)
pathlib.Path("metrics").mkdir(exist_ok=True)
np.savez("model/weights.npz", w=w, b=b)
with open("metrics/train_history.csv", "w") as fh:
    fh.write("epoch,loss\n" + "".join(f"{e},{loss:.6f}\n" for e, loss in history))
json.dump({"final_loss": round(history[-1][1], 6)}, open("metrics/train.json", "w"), indent=2)
