"""Your own training code in a `cmd:` stage, reading exactly the data commit hpipe pinned.

hpipe sets HPIPE_DATA_REPO and HPIPE_DATA_COMMIT (the commit of data.repo at data.ref, or the one
given with `hpipe repro --data-commit`); hangar_pipe.torch reads those columns in bulk.
"""

import json
import os
import pathlib

import torch
import yaml
from torch import nn

from hangar_pipe.torch import BatchLoader, ColumnsDataset

params = yaml.safe_load(pathlib.Path("params.yaml").read_text())["custom"]
torch.manual_seed(params["seed"])

train = ColumnsDataset(["mnist_training_images", "mnist_training_labels"])  # the pinned commit
assert train.commit == os.environ["HPIPE_DATA_COMMIT"]
loader = BatchLoader(train, batch_size=params["batch_size"], shuffle=True, seed=params["seed"])

model = nn.Sequential(nn.Linear(train.tensors[0].shape[1], params["hidden"]), nn.ReLU(),
                      nn.Linear(params["hidden"], 10))
optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
loss_fn = nn.CrossEntropyLoss()
losses = []
for epoch in range(params["epochs"]):
    total = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y.reshape(-1))
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
    losses.append(total / len(train))
    print(f"epoch {epoch + 1}: loss {losses[-1]:.4f}")

x, y = train.tensors
accuracy = float((model(x).argmax(1) == y.reshape(-1)).float().mean())
pathlib.Path("metrics").mkdir(exist_ok=True)
metrics = {"train_accuracy": accuracy, "loss": losses[-1], "losses": losses, "data_commit": train.commit}
pathlib.Path("metrics/custom.json").write_text(json.dumps(metrics, indent=2))
