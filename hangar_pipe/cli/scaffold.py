"""`hpipe init`: a commented starter pipeline.yaml and params.yaml. Never overwrites."""

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


def init_project(folder: Path) -> list[str]:
    """Create the starter files that do not exist yet; return one message per file."""
    messages = []
    for name, text in (("pipeline.yaml", PIPELINE_TEMPLATE), ("params.yaml", PARAMS_TEMPLATE)):
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
