"""`hpipe init`: a commented starter pipeline.yaml and params.yaml. Never overwrites.

`hpipe init --hangar --source FILE` writes the Hangar layout instead: a data section and an
ingest -> train -> evaluate pipeline on the user's own file, its model sized from the file."""

from __future__ import annotations

from pathlib import Path

PIPELINE_TEMPLATE = """\
# hangar-pipe pipeline: stages, what they read (deps, params) and write (outs).
# Run `hpipe repro` to bring everything up to date; `hpipe status` says what would run and why.

data:                       # the Hangar repository stages read by default
  repo: .                   # folder holding .hangar, relative to this file
  # ref: master             # branch or commit digest (default: the repo's current branch)

stages:
  prepare:
    desc: Write a cleaned copy of the raw data.
    cmd: mkdir -p data && echo cleaned > data/clean.txt
    deps: []                # files or folders; editing one reruns the stage
    params: [prepare.threshold]   # keys in params.yaml; changing a value reruns the stage
    outs: [data/clean.txt]  # files or folders the stage writes

  # train:
  #   uses: mypkg.train:main    # a Python callable instead of cmd; its module is a dependency
  #   with: {epochs: 3}         # keyword arguments for it
  #   deps: [data/clean.txt]
  #   params: [train]           # a key naming a subtree tracks the whole subtree
  #   metrics: [metrics/train.json]
"""

PARAMS_TEMPLATE = """\
# Values read by stages through `params:`. hpipe records them in pipeline.lock by value.
prepare:
  threshold: 0.5
train:
  lr: 0.01
  epochs: 3
"""


HANGAR_PIPELINE = """\
# hangar-pipe pipeline over a Hangar repository: ingest {source} into Hangar columns, train a
# model on them, evaluate it. `hpipe repro` runs what changed; `hpipe status` says why;
# `hpipe dag` draws it. Every key: docs/pipeline.md; the built-in stages: docs/hangar.md, docs/training.md.

data:
  repo: .           # the Hangar repository (.hangar/) lives in this folder; ingest creates it
  ref: master       # the branch stages read, and ingest commits to

stages:
  ingest:
    desc: {source} -> Hangar columns {prefix}_{{training,validation,test}}_{{images,labels}}.
    uses: ingest    # built-in: read the file, split it (seeded), write the columns, commit
    # {source} is a dependency by itself: edit it and ingest commits the new data.
    # CSV: one row per sample, the label in a column named `label` (else the last); `label: NAME`
    # chooses another. NPZ: arrays x/y or images/labels. Pixels are scaled to [0, 1]; `scale: N`.
    with:
      source: {source}
      prefix: {prefix}
      splits: {{training: 0.7, validation: 0.15, test: 0.15}}
      seed: 0
    outs:
      - hangar: [{prefix}_training_images, {prefix}_training_labels, {prefix}_validation_images,
                 {prefix}_validation_labels, {prefix}_test_images, {prefix}_test_labels]

  train:
    desc: Train the model of params.yaml (train:) on the training columns.
    uses: train
    with: {{images: {prefix}_training_images, labels: {prefix}_training_labels,
           val_images: {prefix}_validation_images, val_labels: {prefix}_validation_labels}}
    deps:           # a data commit that changes none of these columns reruns nothing
      - hangar: [{prefix}_training_images, {prefix}_training_labels, {prefix}_validation_images,
                 {prefix}_validation_labels]
    params: [train]               # every key under train: in params.yaml
    outs: [models/model.pt]       # the checkpoint (records the data commit it was trained on)
    metrics: [metrics/train.json]
    plots: [metrics/train_history.csv]

  evaluate:
    desc: Accuracy, per-class precision and recall, confusion matrix on the test columns.
    uses: evaluate
    with: {{images: {prefix}_test_images, labels: {prefix}_test_labels}}
    deps:
      - models/model.pt
      - hangar: [{prefix}_test_images, {prefix}_test_labels]
    metrics: [metrics/eval.json]
    plots: [metrics/confusion.csv]
"""

HANGAR_PARAMS = """\
# Read by the train stage (params: [train]); hpipe records the values in pipeline.lock.
# {source}: {samples} samples of {features} values, {classes} classes.
train:
  model: {{kind: mlp, layers: [{features}, 128, {classes}]}}   # first: features, last: classes
  optimizer: adam   # or sgd (with momentum:)
  lr: 0.001
  weight_decay: 0.0
  epochs: 10
  batch_size: 32
  seed: 0           # same seed, same data, same bytes
  device: auto      # cuda when there is one, else cpu
"""


def hangar_files(source: str, prefix: str) -> dict[str, str]:
    """pipeline.yaml and params.yaml of the Hangar layout, the model sized from `source`."""
    from hangar_pipe.stages.ingest import load_source

    x, y, _ = load_source(source)
    features = int(x[0].size) if len(x) else 0
    classes = int(y.max()) + 1 if len(y) else 0
    fields = {"source": source, "prefix": prefix, "samples": len(x), "features": features,
              "classes": classes}
    return {"pipeline.yaml": HANGAR_PIPELINE.format(**fields), "params.yaml": HANGAR_PARAMS.format(**fields)}


def init_project(folder: Path, files: dict[str, str] | None = None) -> list[str]:
    """Create the starter files that do not exist yet; return one message per file."""
    messages = []
    files = files or {"pipeline.yaml": PIPELINE_TEMPLATE, "params.yaml": PARAMS_TEMPLATE}
    for name, text in files.items():
        path = folder / name
        if path.exists():
            messages.append(f"{name} exists, left as it is")
        else:
            path.write_text(text, encoding="utf-8")
            messages.append(f"wrote {name}")
    gitignore = folder / ".gitignore"
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if {".hpipe", ".hpipe/", "/.hpipe/"} & set(text.splitlines()):
        messages.append(".gitignore already ignores .hpipe/")
    else:
        prefix = "\n" if text and not text.endswith("\n") else ""
        with open(gitignore, "a", encoding="utf-8") as fh:
            fh.write(f"{prefix}.hpipe/\n")
        messages.append("added .hpipe/ to .gitignore")
    return messages
