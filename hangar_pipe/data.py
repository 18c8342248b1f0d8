"""`from hangar_pipe.data import open_columns`: kept at this name for user code (see hangar_pipe.hangar.columns)."""

from hangar_pipe.hangar.columns import open_columns
from hangar_pipe.hangar.source import pinned_commit

__all__ = ["open_columns", "pinned_commit"]
