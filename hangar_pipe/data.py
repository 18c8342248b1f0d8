"""Hangar data from user code: `open_columns` (read what hpipe pinned) and `repository` (write).

Kept at this name for user code; the pieces live in hangar_pipe.hangar.
"""

import os
from pathlib import Path
from typing import Any

from hangar_pipe.hangar.columns import open_columns
from hangar_pipe.hangar.source import pinned_commit


def repository(path: str | os.PathLike[str] = ".") -> Any:
    """Hangar's `Repository` in `path` (initialised if the folder holds none), with hpipe's
    compatibility fixes applied first: with a plain `from hangar import Repository`, writing a
    flat-vector column (Hangar's HDF5 '00' backend) fails on today's numpy (no `numpy.math`)."""
    from hangar_pipe.hangar.write import open_repository

    return open_repository(Path(path))


def pinned() -> tuple[str, str]:
    """(repo folder, commit digest) hpipe resolved for this stage (kept for earlier user code)."""
    folder, commit = pinned_commit()
    return str(folder), commit


__all__ = ["open_columns", "pinned", "pinned_commit", "repository"]
