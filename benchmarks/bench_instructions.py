"""No-op cost in CPU instructions (valgrind callgrind), deterministic where wall time on a shared VM is not.

Counts the instructions of `hpipe status` and a no-op `hpipe repro` on the up-to-date 3-stage
project of bench_noop.py, and of another hpipe (`--baseline`, e.g. the previous commit's
install) on its own copy; once with Python's bytecode cache (a normal install) and once with
PYTHONDONTWRITEBYTECODE=1 (every module compiled on every start, as on some CI machines).
Instruction counts repeat to within a fraction of a percent whatever else the machine does.

Run from the repo root:  .venv/bin/python benchmarks/bench_instructions.py [--baseline HPIPE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import HPIPE, WORK, machine, ratio, run, table, write_project
from bench_noop import FILES, STAGES


def instructions(cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", *cmd],
                              cwd=cwd, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"callgrind failed on {cmd}:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def clear_bytecode(hpipe: Path) -> None:
    """Remove the __pycache__ folders of the hangar_pipe package that `hpipe` runs."""
    python = hpipe.parent / "python"
    out = subprocess.run([str(python), "-c", "import hangar_pipe, os; print(os.path.dirname(hangar_pipe.__file__))"],
                         cwd=WORK, capture_output=True, text=True, check=True).stdout.strip()  # not the repo's copy
    for cache in Path(out).rglob("__pycache__"):
        shutil.rmtree(cache)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="another hpipe executable to count the same way")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    where = machine()
    tools = {"this": HPIPE, **({"baseline": args.baseline} if args.baseline else {})}
    folders = {}
    for name, hpipe in tools.items():
        folders[name] = WORK / "instructions" / name
        write_project(folders[name], STAGES, FILES, "pipeline.yaml")
        run([hpipe, "repro"], folders[name], expect="3 ran")
    rows = []
    for mode, env in (("bytecode cached", {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}),
                      ("PYTHONDONTWRITEBYTECODE=1", {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})):
        for cmd in ("status", "repro"):
            counts = {}
            for name, hpipe in tools.items():
                if mode.startswith("PYTHON"):
                    clear_bytecode(hpipe)
                else:
                    subprocess.run([str(hpipe), cmd], cwd=folders[name], env=env, capture_output=True)
                python = str(Path(hpipe).parent / "python")
                counts[name] = instructions([python, str(hpipe), cmd], folders[name], env)
            base = counts.get("baseline")
            rows.append([f"no-op {cmd}", mode, f"{counts['this'] / 1e6:.1f}",
                         f"{base / 1e6:.1f}" if base else "-", ratio(counts["this"], base) if base else "-"])
    print(f"## No-op instruction counts (callgrind), 3-stage pipeline\n\nMachine: {where}\n")
    print(table(["command", "bytecode", "this (M instructions)", "baseline (M)", "this/baseline"], rows))


if __name__ == "__main__":
    main()
