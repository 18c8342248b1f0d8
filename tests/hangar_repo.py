"""Build and change real Hangar repositories with Hangar's own API, for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hangar_pipe.hangar import compat


class Repo:
    """A Hangar repository in `path`, changed through short-lived writer checkouts."""

    def __init__(self, path: Path) -> None:
        self.hangar = compat.import_hangar()
        self.path = path
        with compat.quiet():
            if (path / ".hangar").exists():
                self.repo = self.hangar.Repository(str(path), exists=True)
            else:
                self.repo = self.hangar.Repository(str(path), exists=False)
                self.repo.init(user_name="test", user_email="test@example.com")

    def write(self, message: str, branch: str = "master", **columns: dict[Any, np.ndarray]
              ) -> str:
        """Write samples (creating columns as needed) and commit; returns the commit digest."""
        with compat.quiet():
            co = self.repo.checkout(write=True, branch=branch)
        try:
            for name, samples in columns.items():
                if name not in co.columns:
                    first = next(iter(samples.values()))
                    co.add_ndarray_column(name, prototype=first)
                col = co.columns[name]
                with col:
                    for key, value in samples.items():
                        col[key] = value
            return co.commit(message)
        finally:
            co.close()

    def edit(self, message: str, fn: Any, branch: str = "master") -> str:
        """Run fn(writer_checkout) and commit."""
        with compat.quiet():
            co = self.repo.checkout(write=True, branch=branch)
        try:
            fn(co)
            return co.commit(message)
        finally:
            co.close()

    def branch(self, name: str, base: str | None = None) -> None:
        self.repo.create_branch(name, base_commit=base)

    def merge(self, message: str, into: str, other: str) -> str:
        with compat.quiet():
            return self.repo.merge(message, master_branch=into, dev_branch=other)


def images(n: int, seed: int = 0, dim: int = 16) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: rng.random(dim, dtype=np.float32) for i in range(n)}


def labels(n: int, offset: int = 0) -> dict[int, np.ndarray]:
    return {i: np.array([(i + offset) % 10], dtype=np.int64) for i in range(n)}


# a stage reading two columns of the project's repository, recording the commit it read
READER = """
    stages:
      train:
        cmd: echo "$HPIPE_DATA_COMMIT" > model.txt
        deps:
          - hangar: [imgs, labels]
        outs: [model.txt]
"""
