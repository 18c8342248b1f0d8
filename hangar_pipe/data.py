"""`from hangar_pipe.data import open_columns`: kept at this name for user code (see hangar_pipe.hangar.columns)."""

from hangar_pipe.hangar.columns import open_columns
from hangar_pipe.hangar.source import pinned_commit


def pinned() -> tuple[str, str]:
    """(repo folder, commit digest) hpipe resolved for this stage (kept for earlier user code)."""
    folder, commit = pinned_commit()
    return str(folder), commit


__all__ = ["open_columns", "pinned", "pinned_commit"]
