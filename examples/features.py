"""The demo's per-sample step (`uses: map` in pipeline.yaml): each MNIST image standardized with
the dataset's mean and standard deviation (0.1307, 0.3081), as PyTorch's MNIST example does.

hpipe calls it with a batch of samples, a dict of input column -> array, and stores what it
returns (one output column: the array alone; several: a dict of column -> array). It must give
each sample the same result whatever else is in its batch: hpipe recomputes only the samples
that changed, and `hpipe repro --verify` checks that this equals computing them all.
"""

from __future__ import annotations

import numpy as np


def standardize(batch: dict[str, np.ndarray], mean: float = 0.1307, std: float = 0.3081) -> np.ndarray:
    (images,) = batch.values()
    return ((images - np.float32(mean)) / np.float32(std)).astype(np.float32)
