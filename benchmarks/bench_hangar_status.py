"""Hangar deps on the no-op path, and `hpipe status` after one sample changed, at 100k samples per column.

Three copies of one project whose pipeline reads two 100,000-sample Hangar columns (`imgs`
100k x 4 float32, `labels` 100k x 1 int64), all brought up to date with `hpipe repro`:
- `with`: the no-op with the Hangar deps;
- `without`: the same pipeline with the Hangar deps taken out (the anchor of the no-op target);
- `changed`: one label changed and committed after the repro, so `hpipe status` explains it
  (`column labels (1 modified)`), which reads and diffs both commits' records.
The commands run round-robin (with, without, changed, ...) after one warm-up each, so load from
other processes hits all alike. Targets (issue 13): the no-op with Hangar deps within 30 ms of the
one without (part 4); the explanation (changed status minus no-op status) <= 100 ms (part 3).

Run from the repo root:  .venv/bin/python benchmarks/bench_hangar_status.py [--reps 9]
(with PYTHONPATH=/absolute/checkout it times that checkout instead)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from _common import HPIPE, WORK, bench_interleaved, loadavg, machine, make_hangar_repo, run, summary, table

N = 100_000
STAGES = """stages:
  stats:
    cmd: echo "$HPIPE_DATA_COMMIT" > stats.txt
    deps:
{deps}    outs: [stats.txt]
  report:
    cmd: cp stats.txt report.txt
    deps: [stats.txt]
    outs: [report.txt]
"""
RELABEL = """
import numpy as np
from hangar_pipe.hangar import compat
hangar = compat.import_hangar()
with compat.quiet():
    co = hangar.Repository(".", exists=True).checkout(write=True)
co.columns["labels"][7] = np.array([9], dtype=np.int64)
co.commit("relabel one sample")
co.close()
"""


def project(name: str, repo: str, hangar_deps: bool) -> str:
    """A copy of the 100k repo with the pipeline, brought up to date; its folder."""
    folder = WORK / "hangar-status" / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(WORK / repo, folder)
    deps = "      - hangar: [imgs, labels]\n" if hangar_deps else "      - commit.txt\n"
    (folder / "pipeline.yaml").write_text(STAGES.format(deps=deps))
    run([HPIPE, "repro"], folder, expect="2 ran")
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    where = machine()
    make_hangar_repo(WORK / "hangar-100k", N, 4)
    with_dir = project("with", "hangar-100k", True)
    without_dir = project("without", "hangar-100k", False)
    changed_dir = project("changed", "hangar-100k", True)
    subprocess.run([sys.executable, "-c", RELABEL], cwd=changed_dir, check=True, capture_output=True)
    ok = "Everything is up to date."
    why = "column labels (1 modified)"
    jobs = {"no-op status, Hangar deps": ([HPIPE, "status"], with_dir, ok),
            "no-op status, no Hangar deps": ([HPIPE, "status"], without_dir, ok),
            "no-op repro, Hangar deps": ([HPIPE, "repro"], with_dir, ok),
            "no-op repro, no Hangar deps": ([HPIPE, "repro"], without_dir, ok),
            "status after 1 sample changed": ([HPIPE, "status"], changed_dir, why)}
    t = bench_interleaved(jobs, args.reps)
    print(f"## Hangar deps at {N:,} samples per column ({args.reps} runs each after 1 warm-up, interleaved)\n")
    print(f"Machine: {where}; load average at end {loadavg()}\n")
    print(table(["command", "median s", "min s"], [[k, v.median, v.min] for k, v in t.items()]))
    deps_cost = {c: 1000 * (t[f"no-op {c}, Hangar deps"].median - t[f"no-op {c}, no Hangar deps"].median)
                 for c in ("status", "repro")}
    explain = 1000 * (t["status after 1 sample changed"].median - t["no-op status, Hangar deps"].median)
    worst = max(deps_cost.values())
    print(f"\nHangar deps on the no-op path (medians): status +{deps_cost['status']:.0f} ms, repro"
          f" +{deps_cost['repro']:.0f} ms; target <= 30 ms: {'met' if worst <= 30 else 'MISSED'}")
    print(f"Explaining 1 changed sample (changed status - no-op status, medians): {explain:.0f} ms;"
          f" target <= 100 ms: {'met' if explain <= 100 else 'MISSED'}")
    summary("Hangar deps on the no-op (2 x 100k), worst of status/repro", f"+{worst:.0f} ms", "<= 30 ms", worst <= 30)
    summary("`status` explaining 1 changed sample of 100k", f"{explain:.0f} ms", "<= 100 ms", explain <= 100)


if __name__ == "__main__":
    main()
