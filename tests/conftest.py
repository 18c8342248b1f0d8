"""Shared helpers: run the real `hpipe` command in temporary project folders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

_SCRIPT = Path(sys.executable).with_name("hpipe")
HPIPE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "hangar_pipe.cli"]
# stage commands say `python`: make it this interpreter (the test venv), as an activated venv would
# Two xdist workers share the machine's cores: each training stage a test starts gets one torch
# thread, not one per core (oversubscribed, torch slows down many times over). Thresholds in the
# tests do not depend on it; determinism tests compare runs made under the same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HPIPE_THREADS", "1")  # hpipe's own setting (--threads), which built-in stages obey
ENV = {**os.environ, "PYTHONUNBUFFERED": "1",
       "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
os.environ["PATH"] = ENV["PATH"]  # also for pipelines run in-process through the Python API
# A test run started in the background of a script (`.ci/run &`) inherits SIGINT ignored, and so
# would every hpipe it starts (an ignored signal survives exec): the interrupt tests send SIGINT
# as a user's Ctrl-C does, to an hpipe that handles it. A handler is reset to the default on exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Done:
    code: int
    out: str
    err: str


class Project:
    """A temporary project folder with helpers to write files and run hpipe in it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def pipeline(self, text: str) -> None:
        self.write("pipeline.yaml", text)

    def hpipe(self, *args: str, check: int | None = 0, timeout: float = 120,
              env: dict[str, str] | None = None) -> Done:
        proc = subprocess.run([*HPIPE, *args], cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, env={**ENV, **(env or {})})
        done = Done(proc.returncode, proc.stdout, proc.stderr)
        if check is not None:
            assert done.code == check, f"exit {done.code} != {check}\n--- out\n{done.out}\n--- err\n{done.err}"
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*HPIPE, *args], cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=ENV)

    def lines(self, done: Done, mark: str) -> list[str]:
        """The stage lines of an output whose stage result starts with a mark (✓ · • ✗)."""
        return [line for line in done.out.splitlines() if line.startswith(mark)]

    def ran(self, done: Done) -> list[str]:
        return [line.split()[1].rstrip(":") for line in self.lines(done, "✓")]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def user_error(done: Done) -> str:
    """Assert a bad-input exit: code 2, one line on stderr, no traceback; return the line."""
    assert done.code == 2, f"exit {done.code}\n{done.out}\n{done.err}"
    assert "Traceback" not in done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    return lines[0]


@pytest.fixture
def three_stage(project: Project) -> Project:
    """prepare -> train -> evaluate, with params and a raw input file."""
    project.write("raw.txt", "1\n2\n3\n")
    project.write("params.yaml", """
        prepare: {scale: 2}
        train: {lr: 0.1, epochs: 3, opt: {name: sgd, momentum: 0.9}}
        unrelated: 1
    """)
    project.write("steps.py", """
        import json, pathlib, sys
        import yaml
        step = sys.argv[1]
        if step == "prepare":
            scale = yaml.safe_load(open("params.yaml"))["prepare"]["scale"]
            pathlib.Path("data").mkdir(exist_ok=True)
            open("data/clean.txt", "w").write("".join(f"{int(l) * scale}\\n" for l in open("raw.txt")))
        elif step == "train":
            pathlib.Path("model.txt").write_text(str(sum(map(int, open("data/clean.txt")))))
        else:
            json.dump({"score": int(open("model.txt").read())}, open("metrics.json", "w"))
    """)
    project.pipeline("""
        stages:
          prepare:
            cmd: python steps.py prepare
            deps: [raw.txt]
            params: [prepare.scale]
            outs: [data/clean.txt]
          train:
            cmd: python steps.py train
            deps: [data/clean.txt]
            params: [train]
            outs: [model.txt]
          evaluate:
            cmd: python steps.py evaluate
            deps: [model.txt]
            metrics: [metrics.json]
    """)
    return project


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None
