"""The README's whole workflow, as written, on a fresh copy of the repository: the demo's first
run, a no-op, committing new data, status, the rerun, `--data-commit`, runs, metrics, plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ENV, Project

REPO = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent) + "/"


def fresh_clone(project: Project) -> None:
    """What `git clone` gives: the tracked files only (no .hpipe, .hangar, lock or outputs)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (project.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, project.root / rel)


def blocks(readme: str) -> list[list[str]]:
    return [b.splitlines() for b in re.findall(r"```(?:text|sh)\n(.*?)```", readme, re.S)]


def shell(project: Project, command: str) -> str:
    command = command.replace(".venv/bin/", BIN)
    done = subprocess.run(command, shell=True, cwd=project.root, capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def shape(line: str) -> str:
    """A line with its numbers and digests blanked: timings and commits differ per machine."""
    return re.sub(r"[0-9a-f]{8,}|\d[\d,.]*", "#", line)


def test_the_readme_workflow_from_a_fresh_clone(project: Project) -> None:
    fresh_clone(project)
    readme = (project.root / "README.md").read_text()
    setup, first_run, day = (b for b in blocks(readme) if b and (
        "pip install" in b[0] and "hpipe repro" in b[0] or b[0].startswith(("→ ingest", "$ .venv/bin/hpipe repro"))))
    first = shell(project, setup[0].split("&&")[-1])
    lines = {shape(line) for line in first.splitlines()}
    assert [w for w in first_run if w[:1] in ("→", "✓") and shape(w) not in lines] == []
    assert shape(first_run[-1]) in lines and "epoch 10/10" in first
    commit = re.findall(r"committed (a=[0-9a-f]{40})", first)[-1]  # the last one: what train read
    metrics = project.read("metrics/eval.json")

    steps: list[tuple[str, list[str]]] = []  # (command, the output lines the README shows)
    for line in day:
        if line.startswith("$ "):
            steps.append((line[2:].split("  #")[0].strip().replace("a=6cee584e", commit[:10]), []))
        else:
            steps[-1][1].append(line)
    for command, expected in steps:
        out = shell(project, command)
        assert [shape(line) for line in out.splitlines()[:len(expected)]] == list(map(shape, expected)), command
        if "--data-commit" in command:
            assert "↺ train: restored" in out and project.read("metrics/eval.json") == metrics
    assert json.loads(project.hpipe("runs", "--json").out)[0]["data_commit"] == commit
    assert (project.root / "hpipe_plots" / "index.html").is_file()
