"""SIGKILL trials: `hpipe repro` killed at a uniformly random moment of a real pipeline (Hangar
ingest, a folder out, train, evaluate; the params flip between two settings each trial, so stages
run or are restored from the run cache), then `hpipe repro` again. Counts recoveries with no
manual step, stages run twice at once, outputs that differ from a clean run's, and Hangar commits
lost. The trial logic is tests/kill_trials.py, which the test suite runs a few times.

Run from the repo root:  .venv/bin/python benchmarks/bench_kill.py [--trials 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _common import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kill_trials import run_trials  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(machine())
    root = Path(tempfile.mkdtemp(prefix="hpipe-kill-"))
    try:
        figures = run_trials(root, args.trials, args.seed)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n| trials | killed while a stage ran | recovered, no manual step | stage ran twice at once"
          f" | outputs differ from a clean run | Hangar commits lost | seconds |\n|---|---|---|---|---|---|---|\n"
          f"| {figures.trials} | {figures.killed_mid_stage} | {figures.recovered} | {figures.overlaps}"
          f" | {figures.corrupted} | {figures.lost_commits} | {figures.seconds:.0f} |")
    for problem in figures.problems:
        print(f"- {problem}")


if __name__ == "__main__":
    main()
