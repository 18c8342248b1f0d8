"""Make a small two-class dataset (deterministic from params.yaml's prepare.seed)."""

import pathlib

import numpy as np
import yaml

params = yaml.safe_load(open("params.yaml"))["prepare"]
rng = np.random.default_rng(params["seed"])
n = params["samples"]
y = (rng.random(n) < 0.5).astype(np.int64)  # two overlapping clusters
x = rng.normal(size=(n, 2)) + (2 * y - 1)[:, None] * params["separation"]
pathlib.Path("data").mkdir(exist_ok=True)
np.savez("data/dataset.npz", x=x, y=y)
