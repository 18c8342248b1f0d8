"""Scaling with the number of stages: a chain of N trivial `cp` stages, hpipe vs DVC.

Stage s000 copies in.txt to s000.txt; stage i copies s(i-1).txt to s(i).txt. For each N and
each tool, in a fresh project under benchmarks/.work/: the first run from scratch, a full
rerun of all N stages after in.txt changes, and a no-op run (median of 3 after 1 warm-up).
Per-stage cost (time / N) shows whether the work grows linearly (flat) or quadratically
(growing with N). DVC's full rerun takes about 100 s at N=200, so the whole run takes minutes.

Run from the repo root:  .venv/bin/python benchmarks/bench_scaling.py [--sizes 25,50,100,200] [--no-dvc]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import HPIPE, bench, dvc_version, ensure_dvc, loadavg, machine, ratio, table, timed, twin_projects

HPIPE_OK, DVC_OK = "Everything is up to date.", "Data and pipelines are up to date."


@dataclass
class Result:
    first: float
    rerun: float
    noop: float
    load: str  # 1-minute load average when this measurement started


def chain(n: int) -> dict[str, dict[str, object]]:
    stages: dict[str, dict[str, object]] = {}
    for i in range(n):
        src = "in.txt" if i == 0 else f"s{i - 1:03d}.txt"
        stages[f"s{i:03d}"] = {"cmd": f"cp {src} s{i:03d}.txt", "deps": [src], "outs": [f"s{i:03d}.txt"]}
    return stages


def measure(tool: Sequence[str | Path], folder: Path, n: int, ran: str, up_to_date: str, noop_reps: int) -> Result:
    """First run, full rerun after the input changes, no-op; checks each time that all N stages ran."""
    load = loadavg().split()[0]

    def repro() -> float:
        seconds, out = timed([*tool, "repro"], folder)
        if out.count(ran) != n:
            raise SystemExit(f"{tool[0]}: expected {n} stages to run, saw {out.count(ran)}:\n{out[-2000:]}")
        return seconds

    first = repro()
    (folder / "in.txt").write_text("changed input\n")
    rerun = repro()
    if (folder / f"s{n - 1:03d}.txt").read_text() != "changed input\n":
        raise SystemExit(f"{tool[0]}: the last stage's output does not hold the new input")
    noop = bench([*tool, "repro"], folder, reps=noop_reps, expect=up_to_date).median
    return Result(first, rerun, noop, load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="25,50,100,200", help="comma-separated stage counts")
    ap.add_argument("--no-dvc", action="store_true", help="time hpipe only")
    ap.add_argument("--noop-reps", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dvc = None if args.no_dvc else ensure_dvc()
    where = machine() + (f"; dvc {dvc_version(dvc)}" if dvc else "; DVC skipped")
    results: dict[tuple[str, int], Result] = {}
    for n in sizes:
        hp_dir, dvc_dir = twin_projects(f"chain{n}", chain(n), {"in.txt": "input\n"}, dvc)
        print(f"N={n}: hpipe...", file=sys.stderr, flush=True)
        # hpipe prints "✓ name: ran in ..." per stage; DVC prints "Running stage 'name':".
        results["hpipe", n] = measure([HPIPE], hp_dir, n, ": ran in ", HPIPE_OK, args.noop_reps)
        if dvc and dvc_dir:
            print(f"N={n}: dvc...", file=sys.stderr, flush=True)
            results["dvc", n] = measure([dvc], dvc_dir, n, "Running stage ", DVC_OK, args.noop_reps)

    tools = ["hpipe"] + (["dvc"] if dvc else [])
    print("## Scaling: chain of N `cp` stages (wall seconds; ms/stage = time / N)\n")
    print(f"Machine: {where}; load average at end {loadavg()}\n")
    rows: list[list[object]] = []
    for tool in tools:
        prev: tuple[int, float] | None = None
        for n in sizes:
            r = results[tool, n]
            marginal = f"{1000 * (r.rerun - prev[1]) / (n - prev[0]):.1f}" if prev else "-"
            rows.append([n, tool, r.first, f"{1000 * r.first / n:.1f}", r.rerun,
                         f"{1000 * r.rerun / n:.1f}", marginal, r.noop, r.load])
            prev = (n, r.rerun)
    print(table(["N", "tool", "first run s", "ms/stage", "full rerun s", "ms/stage",
                 "marginal rerun ms/stage", "no-op s (median)", "load"], rows))
    print("\nmarginal = (rerun(N) - rerun(previous N)) / (N - previous N): flat when total time is linear in N,"
          " growing when it is quadratic.")
    if dvc:
        print("\nhpipe / DVC:\n")
        print(table(["N", "first run", "full rerun", "no-op"],
                    [[n, *(ratio(getattr(results["hpipe", n], f), getattr(results["dvc", n], f))
                           for f in ("first", "rerun", "noop"))] for n in sizes]))


if __name__ == "__main__":
    main()
