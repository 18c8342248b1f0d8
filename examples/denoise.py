"""Commit new data to the demo's Hangar repository: clean the first N training images (pixels
below 0.2 set to 0, as a denoising pass would). Then `hpipe status` says that the normalize
stage recomputes those N samples, and nothing else.

    python examples/denoise.py 1
"""

from __future__ import annotations

import sys

import numpy as np

from hangar_pipe.data import repository


def denoise(count: int, column: str = "mnist_training_images", below: float = 0.2) -> str:
    repo = repository(".")  # hangar's Repository, with hpipe's compatibility fixes applied
    co = repo.checkout(write=True)
    try:
        images = co.columns[column]
        for key in sorted(images.keys())[:count]:
            image = images[key]
            images[key] = np.where(image < below, 0, image).astype(image.dtype)
        return co.commit(f"denoise {count} samples of {column}")
    finally:
        co.close()


if __name__ == "__main__":
    print(f"committed {denoise(int(sys.argv[1]) if len(sys.argv) > 1 else 1)}")
