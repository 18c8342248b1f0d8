"""Commit new data to the demo's Hangar repository: change the labels of the first N training
samples (to the next digit), as a labelling fix would. Then `hpipe status` says what it changes.

    python examples/relabel.py 10
"""

from __future__ import annotations

import sys

from hangar_pipe.data import repository


def relabel(count: int, column: str = "mnist_training_labels") -> str:
    repo = repository(".")  # hangar's Repository, with hpipe's compatibility fixes applied
    co = repo.checkout(write=True)
    try:
        labels = co.columns[column]
        for key in sorted(labels.keys())[:count]:
            labels[key] = (labels[key] + 1) % 10
        return co.commit(f"relabel {count} samples of {column}")
    finally:
        co.close()


if __name__ == "__main__":
    print(f"committed {relabel(int(sys.argv[1]) if len(sys.argv) > 1 else 10)}")
