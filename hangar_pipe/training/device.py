"""Where training runs: the device, and where the data goes on it.

On the CPU the data stays where it is. On CUDA the whole dataset is moved to the GPU once when it
fits in half of the free GPU memory (the other half is left to the model and its activations);
otherwise batches are gathered on the CPU, copied into pinned memory and sent with non-blocking
copies. None of the CUDA code runs on a CPU device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from hangar_pipe.errors import UserError
from hangar_pipe.training.loader import BatchLoader, ColumnsDataset

GPU_SHARE = 0.5  # of the free GPU memory the data may take to be moved there whole


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else the CPU) or a torch device name; one line if unusable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"device '{name}' is not a torch device (auto, cpu, cuda, cuda:N)") from None


def dataset_bytes(*datasets: ColumnsDataset) -> int:
    return sum(d.nbytes for d in datasets)


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether `nbytes` of data may live on a CUDA device for the whole run."""
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= free * GPU_SHARE


class DeviceBatches:
    """A CPU BatchLoader whose batches go to a CUDA device through pinned memory, non-blocking."""

    def __init__(self, loader: BatchLoader, device: torch.device) -> None:
        self.loader, self.device, self.dataset = loader, device, loader.dataset

    def record(self) -> dict[str, Any]:
        return self.loader.record()

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def epoch(self) -> int:  # (the loader position a resumed run puts back)
        return self.loader.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.loader.epoch = value

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for batch in self.loader:
            yield tuple(t.pin_memory().to(self.device, non_blocking=True) for t in batch)


Loader = BatchLoader | DeviceBatches


def loader_on(device: torch.device, dataset: ColumnsDataset, batch_size: int, *, whole: bool,
              **options: Any) -> Loader:
    """Batches of `dataset` on `device`: gathered there (`whole`: the data moved once) or sent."""
    if device.type != "cuda" or (whole and not dataset.streamed):
        return BatchLoader(dataset, batch_size, device=device, **options)
    return DeviceBatches(BatchLoader(dataset, batch_size, **options), device)
