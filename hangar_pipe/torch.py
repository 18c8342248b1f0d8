"""`from hangar_pipe.torch import ColumnsDataset, BatchLoader`: kept at this name for user code.

The loader lives in hangar_pipe.training.loader (a module named torch.py that imports torch
reads badly, so nothing else lives here).
"""

from hangar_pipe.hangar.source import pinned_commit
from hangar_pipe.training.loader import (
    DEFAULT_BUDGET,
    BatchLoader,
    ColumnsDataset,
    TensorColumns,
    column_keys,
    default_cache_dir,
    key_value,
    read_column,
    sort_keys,
)
from hangar_pipe.training.order import ChunkShuffle, FullShuffle, Sequential

__all__ = ["DEFAULT_BUDGET", "BatchLoader", "ChunkShuffle", "ColumnsDataset", "FullShuffle", "Sequential",
           "TensorColumns", "column_keys", "default_cache_dir", "key_value", "pinned_commit", "read_column",
           "sort_keys"]
