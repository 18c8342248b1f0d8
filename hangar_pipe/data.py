"""For user code in a stage: open exactly the Hangar data hpipe resolved for this run.

hpipe sets HPIPE_DATA_REPO and HPIPE_DATA_COMMIT for every stage command (the commit of
data.repo at data.ref, or the one given with --data-commit), so a `cmd:` script reads

    from hangar_pipe.data import open_columns
    with open_columns(["mnist_training_images", "mnist_training_labels"]) as cols:
        x0 = cols["mnist_training_images"][0]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from hangar_pipe import compat
from hangar_pipe.errors import UserError


def pinned() -> tuple[str, str]:
    """(repo folder, commit digest) hpipe resolved for this stage."""
    repo, commit = os.environ.get("HPIPE_DATA_REPO"), os.environ.get("HPIPE_DATA_COMMIT")
    if not repo or not commit:
        raise UserError("HPIPE_DATA_REPO/HPIPE_DATA_COMMIT are not set: run this through"
                        " `hpipe repro`, or pass repo= and commit=")
    return repo, commit


@contextlib.contextmanager
def open_columns(columns: list[str] | None = None, *, repo: str | None = None,
                 commit: str | None = None) -> Iterator[dict[str, Any]]:
    """A read-only checkout at the pinned commit; yields {name: column} (all columns by default)."""
    if repo is None or commit is None:
        env_repo, env_commit = pinned()
        repo, commit = repo or env_repo, commit or env_commit
    hangar = compat.import_hangar()
    with compat.quiet():
        co = hangar.Repository(repo, exists=True).checkout(commit=commit)
    try:
        if co.commit_hash != commit:
            raise UserError(f"checked out {co.commit_hash}, expected {commit}")
        names = list(co.columns.keys()) if columns is None else columns
        missing = [n for n in names if n not in co.columns]
        if missing:
            raise UserError(f"column '{missing[0]}' not in {repo} at {commit}")
        yield {name: co.columns[name] for name in names}
    finally:
        co.close()
