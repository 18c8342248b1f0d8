"""For user code in a stage: open exactly the Hangar data hpipe resolved for this run.

hpipe sets HPIPE_DATA_REPO and HPIPE_DATA_COMMIT for every stage command (the commit of
data.repo at data.ref, or the one given with --data-commit), so a `cmd:` script reads

    from hangar_pipe.data import open_columns
    with open_columns(["mnist_training_images", "mnist_training_labels"]) as cols:
        x0 = cols["mnist_training_images"][0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from hangar_pipe.errors import UserError
from hangar_pipe.hangar import compat
from hangar_pipe.hangar.source import pinned_commit


@contextlib.contextmanager
def open_columns(columns: list[str] | None = None, *, repo: str | None = None,
                 commit: str | None = None) -> Iterator[dict[str, Any]]:
    """A read-only checkout at the pinned commit; yields {name: column} (all columns by default)."""
    folder, commit = pinned_commit(repo, commit)
    hangar = compat.import_hangar()
    with compat.quiet():
        co = hangar.Repository(str(folder), exists=True).checkout(commit=commit)
    try:
        if co.commit_hash != commit:
            raise UserError(f"checked out {co.commit_hash}, expected {commit}")
        names = list(co.columns.keys()) if columns is None else columns
        missing = [n for n in names if n not in co.columns]
        if missing:
            raise UserError(f"column '{missing[0]}' not in {folder} at {commit}")
        yield {name: co.columns[name] for name in names}
    finally:
        co.close()
