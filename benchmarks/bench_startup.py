"""No-op start-up against the bare interpreter (issue 13 part 6): `hpipe status`/`repro` vs `python -c pass`.

Runs in the up-to-date 2-stage project that bench_hangar_status.py leaves in
benchmarks/.work/hangar-status/without (run that first), round-robin with `python -c pass`, the
imports of typer and of the engine alone, and a no-op status whose hangar_pipe has no `.pyc` files
(a copy of the sources in benchmarks/.work/nopyc). Target: no-op <= 3x `python -c pass` (medians).

Run from the repo root:  .venv/bin/python benchmarks/bench_startup.py [--reps 10]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys

from _common import ENV, REPO, WORK, bench_interleaved, loadavg, machine, table

PY = sys.executable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    where = machine()
    project = WORK / "hangar-status" / "without"
    if not (project / "pipeline.lock").exists():
        raise SystemExit("run benchmarks/bench_hangar_status.py first")
    compileall.compile_dir(str(REPO / "hangar_pipe"), quiet=1)
    nopyc = WORK / "nopyc"
    shutil.rmtree(nopyc, ignore_errors=True)
    shutil.copytree(REPO / "hangar_pipe", nopyc / "hangar_pipe", ignore=shutil.ignore_patterns("__pycache__"))
    ok = "Everything is up to date."
    src = ["env", f"PYTHONPATH={nopyc}", "PYTHONDONTWRITEBYTECODE=1"]
    jobs = {"python -c pass": ([PY, "-c", "pass"], project, None),
            "hpipe status": ([PY, "-m", "hangar_pipe.cli", "status"], project, ok),
            "hpipe repro": ([PY, "-m", "hangar_pipe.cli", "repro"], project, ok),
            "hpipe status, no .pyc": ([*src, PY, "-m", "hangar_pipe.cli", "status"], project, ok),
            "import typer": ([PY, "-c", "import typer"], project, None),
            "import hangar_pipe.pipeline": ([PY, "-c", "import hangar_pipe.pipeline"], project, None)}
    ENV["PYTHONPATH"] = str(REPO)  # this checkout, whatever the venv has installed
    t = bench_interleaved(jobs, args.reps)
    base = t["python -c pass"].median
    print(f"## No-op start-up ({args.reps} runs each after 1 warm-up, interleaved)\n")
    print(f"Machine: {where}; load average at end {loadavg()}\n")
    print(table(["command", "min ms", "median ms", "/ python -c pass (median)"],
                [[k, 1000 * v.min, 1000 * v.median, f"{v.median / base:.2f}x"] for k, v in t.items()]))
    worst = max(t["hpipe status"].median, t["hpipe repro"].median) / base
    print(f"\nTarget no-op <= 3x python -c pass (medians): {'met' if worst <= 3 else 'MISSED'} ({worst:.2f}x)")


if __name__ == "__main__":
    main()
