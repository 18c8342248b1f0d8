"""No-op start-up against the bare interpreter (issue 13 part 6): `hpipe status`/`repro` vs `python -c pass`.

Runs in an up-to-date 2-stage project (benchmarks/.work/startup: a file dep, a params file, two
`cmd` stages, made and reproduced first), round-robin with `python -c pass`, the import of the
engine alone, and a no-op status whose hangar_pipe has no `.pyc` files (a copy of the sources in
benchmarks/.work/nopyc). Target: no-op <= 3x `python -c pass` (medians).

Run from the repo root:  .venv/bin/python benchmarks/bench_startup.py [--reps 10]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
import sys
from pathlib import Path

from _common import ENV, REPO, WORK, bench_interleaved, loadavg, machine, summary, table

PY = sys.executable
# the console script, as users run it (this checkout: PYTHONPATH), else `python -m hangar_pipe.cli`
SCRIPT = Path(PY).with_name("hpipe")
HPIPE = [str(SCRIPT)] if SCRIPT.exists() else [PY, "-m", "hangar_pipe.cli"]
PIPELINE = """stages:
  stats:
    cmd: wc -c input.txt > stats.txt
    deps: [input.txt]
    params: [stats.window]
    outs: [stats.txt]
  report:
    cmd: cp stats.txt report.txt
    deps: [stats.txt]
    outs: [report.txt]
"""


def make_project() -> Path:
    """The 2-stage project, reproduced (so that status and repro are no-ops)."""
    project = WORK / "startup"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    (project / "pipeline.yaml").write_text(PIPELINE)
    (project / "params.yaml").write_text("stats:\n  window: 5\n")
    (project / "input.txt").write_text("some input\n" * 100)
    subprocess.run([PY, "-m", "hangar_pipe.cli", "repro"], cwd=project, env=ENV, check=True, capture_output=True)
    return project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    where = machine()
    ENV["PYTHONPATH"] = str(REPO)  # this checkout, whatever the venv has installed
    project = make_project()
    compileall.compile_dir(str(REPO / "hangar_pipe"), quiet=1)
    nopyc = WORK / "nopyc"
    shutil.rmtree(nopyc, ignore_errors=True)
    shutil.copytree(REPO / "hangar_pipe", nopyc / "hangar_pipe", ignore=shutil.ignore_patterns("__pycache__"))
    ok = "Everything is up to date."
    src = ["env", f"PYTHONPATH={nopyc}", "PYTHONDONTWRITEBYTECODE=1"]
    jobs = {"python -c pass": ([PY, "-c", "pass"], project, None),
            "hpipe status": ([*HPIPE, "status"], project, ok),
            "hpipe repro": ([*HPIPE, "repro"], project, ok),
            "hpipe status, no .pyc": ([*src, *HPIPE, "status"], project, ok),
            "import hangar_pipe.pipeline": ([PY, "-c", "import hangar_pipe.pipeline"], project, None)}
    t = bench_interleaved(jobs, args.reps)
    base = t["python -c pass"].median
    print(f"## No-op start-up ({args.reps} runs each after 1 warm-up, interleaved)\n")
    print(f"Machine: {where}; load average at end {loadavg()}\n")
    print(table(["command", "min ms", "median ms", "/ python -c pass (median)"],
                [[k, 1000 * v.min, 1000 * v.median, f"{v.median / base:.2f}x"] for k, v in t.items()]))
    for command in ("status", "repro"):
        ratio = t[f"hpipe {command}"].median / base
        print(f"\nNo-op `hpipe {command}` / `python -c pass` (medians): {ratio:.2f}x; target <= 3x:"
              f" {'met' if ratio <= 3 else 'MISSED'}")
        summary(f"no-op `hpipe {command}` start-up / `python -c pass`", f"{ratio:.2f}x", "<= 3x", ratio <= 3)


if __name__ == "__main__":
    main()
