"""The demo's work as one plain Python script in one process: ingest MNIST 5k into a Hangar
repository, normalize each split (the map stage's code), train the 784-500-200-10 MLP for the
params.yaml epochs, evaluate it. It calls the same stage code `hpipe repro` runs (so the same data,
model, epochs and bytes), with none of hpipe's orchestration: no stage processes, no hashing, no
lock, cache or history.

Run in a folder holding the demo's params.yaml:  python benchmarks/demo_plain.py FOLDER

"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(folder: Path) -> None:
    os.chdir(folder)
    sys.path.insert(0, str(folder))  # examples/features.py, as a stage finds it
    from hangar_pipe.hangar.compat import import_hangar
    from hangar_pipe.hangar.store import HangarStore
    from hangar_pipe.stages import evaluate, ingest, train
    from hangar_pipe.stages import map as map_stage

    hangar = import_hangar()
    with __import__("contextlib").redirect_stdout(sys.stderr):
        hangar.Repository(str(folder), exists=False).init(user_name="plain", user_email="plain@example.com")
    os.environ.update(HPIPE_DATA_REPO=str(folder), HPIPE_DATA_BRANCH="master", HPIPE_STAGE="ingest")
    ingest.run(source="mnist-5k", splits={"training": 0.7, "validation": 0.15, "test": 0.15}, seed=0)
    os.environ["HPIPE_ROOT"] = str(folder)
    for split in ("training", "validation", "test"):
        os.environ["HPIPE_STAGE"] = f"normalize@{split}"
        map_stage.run(fn="examples.features:standardize", inputs=[f"mnist_{split}_images"],
                      outputs=[f"mnist_{split}_norm"], batch=256)
    os.environ["HPIPE_DATA_COMMIT"] = HangarStore(folder).branches()["master"]
    os.environ["HPIPE_STAGE"] = "train"
    train.run(images="mnist_training_norm", val_images="mnist_validation_norm")
    os.environ["HPIPE_STAGE"] = "evaluate"
    evaluate.run(images="mnist_test_norm")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
