"""Shared helpers for the benchmarks: timing real commands, the DVC virtualenv, twin projects, tables.

Not a benchmark itself; the `bench_*.py` scripts import it (they run from the repo root as
`.venv/bin/python benchmarks/bench_X.py`, which puts this folder on sys.path).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
DVC_VERSION = "3.67.1"
DVC_VENV = WORK / "dvc-venv"
HPIPE = Path(sys.executable).parent / "hpipe"  # the console script beside the venv's python
# DVC keeps its hash cache in a system folder (/var/tmp/dvc) unless told otherwise: keep it in .work.
SITE_CACHE = WORK / "dvc-site-cache"
# Bytecode cached, as on a user's machine (this sandbox sets PYTHONDONTWRITEBYTECODE=1, which
# compiles every hangar_pipe module on every start: bench_startup and bench_instructions measure
# that case on purpose, with their own environments).
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(SITE_CACHE), "PYTHONDONTWRITEBYTECODE": ""}


Cmd = Sequence["str | os.PathLike[str]"]
Job = tuple[Cmd, Path, "str | None"]  # a command, its working folder, text its output must contain


@dataclass
class Timing:
    """Wall times in seconds of repeated runs of one command."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)


def run(cmd: Cmd, cwd: Path, expect: str | None = None) -> str:
    """Run a command, fail loudly on a non-zero exit, check `expect` is in its output, return the output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{out}")
    if expect is not None and expect not in out:
        raise SystemExit(f"expected {expect!r} in output of {' '.join(map(str, cmd))}:\n{out}")
    return out


def timed(cmd: Cmd, cwd: Path, expect: str | None = None) -> tuple[float, str]:
    """One run of a command: (wall seconds, output)."""
    t0 = time.perf_counter()
    out = run(cmd, cwd, expect)
    return time.perf_counter() - t0, out


def bench(cmd: Cmd, cwd: Path, reps: int = 7, warmup: int = 1,
          expect: str | None = None) -> Timing:
    """`warmup` untimed runs, then `reps` timed runs of the same command."""
    return bench_interleaved({"": (cmd, cwd, expect)}, reps, warmup)[""]


def bench_interleaved(cmds: dict[str, Job], reps: int = 7, warmup: int = 1) -> dict[str, Timing]:
    """Time several commands round-robin (a, b, c, a, b, c, ...), so a burst of load from another
    process on the machine hits all of them alike."""
    for _ in range(warmup):
        for cmd, cwd, expect in cmds.values():
            run(cmd, cwd, expect)
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(reps):
        for name, (cmd, cwd, expect) in cmds.items():
            samples[name].append(timed(cmd, cwd, expect)[0])
    return {name: Timing(xs) for name, xs in samples.items()}


def ensure_dvc() -> Path:
    """The `dvc` executable of benchmarks/.work/dvc-venv, created with pip on first use."""
    dvc = DVC_VENV / "bin" / "dvc"
    if not dvc.exists():
        print(f"installing dvc=={DVC_VERSION} into {DVC_VENV} (once; a minute or two)...", file=sys.stderr)
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(DVC_VENV)], check=True)
        subprocess.run([str(DVC_VENV / "bin" / "pip"), "install", "-q", f"dvc=={DVC_VERSION}"], check=True)
    return dvc


def dvc_version(dvc: Path) -> str:
    return run([dvc, "--version"], REPO).strip()


def write_project(folder: Path, stages: dict[str, dict[str, object]], files: dict[str, str],
                  pipeline_file: str) -> None:
    """A fresh project folder: the given input files plus the stages as `pipeline_file` (same schema for both)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (folder / pipeline_file).write_text(yaml.safe_dump({"stages": stages}, sort_keys=False, width=1000))


def init_dvc(dvc: Path, folder: Path) -> None:
    """`dvc init --no-scm` with analytics and update checks off."""
    run([dvc, "init", "--no-scm", "-q"], folder)
    run([dvc, "config", "core.analytics", "false"], folder)
    run([dvc, "config", "core.check_update", "false"], folder)


def twin_projects(name: str, stages: dict[str, dict[str, object]], files: dict[str, str],
                  dvc: Path | None) -> tuple[Path, Path | None]:
    """Identical fresh hpipe and DVC projects in benchmarks/.work/NAME/{hpipe,dvc}: (hpipe dir, dvc dir).

    Any earlier run's folders, and DVC's hash cache, are removed first so both tools start cold.
    """
    base = WORK / name
    write_project(base / "hpipe", stages, files, "pipeline.yaml")
    if dvc is None:
        return base / "hpipe", None
    shutil.rmtree(SITE_CACHE, ignore_errors=True)
    write_project(base / "dvc", stages, files, "dvc.yaml")
    init_dvc(dvc, base / "dvc")
    return base / "hpipe", base / "dvc"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    """One line describing where and when this ran (call it before the measurements)."""
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; "
            f"Python {platform.python_version()}; {platform.platform()}; load average at start {loadavg()}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats are printed with 3 significant decimals."""
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def make_hangar_repo(folder: Path, n: int, dim: int, *, backend: str | None = None) -> str:
    """A Hangar repo with `imgs` (n x dim float32) and `labels` (n x 1 int64), made once; its commit."""
    marker = folder / "commit.txt"
    if marker.exists():
        return marker.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    import numpy as np

    from hangar_pipe.hangar import compat

    hangar = compat.import_hangar()
    rng = np.random.default_rng(0)
    x = rng.random((n, dim), dtype=np.float32)
    y = rng.integers(0, 10, (n, 1)).astype(np.int64)
    with compat.quiet():
        repo = hangar.Repository(str(folder), exists=False)
        repo.init(user_name="bench", user_email="bench@example.com")
        co = repo.checkout(write=True)
    kwargs = {"backend": backend} if backend else {}
    imgs = co.add_ndarray_column("imgs", shape=(dim,), dtype=np.float32, **kwargs)
    labels = co.add_ndarray_column("labels", shape=(1,), dtype=np.int64)
    with imgs, labels:
        for i in range(n):
            imgs[i] = x[i]
            labels[i] = y[i]
    commit = co.commit(f"{n} samples")
    co.close()
    marker.write_text(commit)
    return commit


def demo_project(name: str) -> Path:
    """A fresh copy of the repo's demo pipeline (pipeline.yaml, params.yaml and the function of its
    normalize stages) in benchmarks/.work/NAME."""
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "examples").mkdir(parents=True)
    for file in ("pipeline.yaml", "params.yaml", "examples/features.py"):
        shutil.copy(REPO / file, folder / file)
    return folder


def summary(what: str, measured: str, target: str, met: bool | None) -> None:
    """One row of run_all.sh's closing table, printed as an HTML comment (invisible in Markdown).

    `measured`: the figure as it compares with the target (a ratio, a share, seconds); `met`:
    None when the figure has no target (reported for the record)."""
    import json

    row = {"what": what, "measured": measured, "target": target,
           "met": "-" if met is None else ("met" if met else "MISSED")}
    print(f"<!-- summary: {json.dumps(row)} -->")
