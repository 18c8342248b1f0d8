"""Template expansion at scale (issue 14): no-op `hpipe status` on a 1,000-stage `matrix` pipeline,
against the same 1,000 stages written out by hand, interleaved. Target: under 1 s.

Both projects are reproduced first (1,000 `echo` stages), so status is a no-op.

Run from the repo root:  .venv/bin/python benchmarks/bench_template.py [--reps 7]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from _common import ENV, REPO, WORK, bench_interleaved, loadavg, machine, summary, table

PY = sys.executable
HPIPE = [PY, "-m", "hangar_pipe.cli"]
A, B = range(10), range(100)
TEMPLATED = f"""stages:
  gen:
    matrix:
      a: {list(A)}
      b: {list(B)}
    cmd: echo ${{item.a}} ${{item.b}} > out/${{item.a}}_${{item.b}}.txt
    outs:
      - out/${{item.a}}_${{item.b}}.txt
"""


def plain() -> str:
    """The same stages, written out (the names a matrix generates)."""
    lines = ["stages:"]
    for a in A:
        for b in B:
            lines += [f"  gen_{a}-{b}:", f"    cmd: echo {a} {b} > out/{a}_{b}.txt", "    outs:",
                      f"      - out/{a}_{b}.txt"]
    return "\n".join(lines) + "\n"


def make(name: str, text: str) -> Path:
    folder = WORK / "template" / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "out").mkdir(parents=True)
    (folder / "pipeline.yaml").write_text(text)
    done = subprocess.run([*HPIPE, "repro", "-j", "2", "-q"], cwd=folder, env=ENV, check=True,
                          capture_output=True, text=True)
    assert "failed" not in done.stdout, done.stdout
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    where = machine()
    ENV["PYTHONPATH"] = str(REPO)
    templated = make("matrix", TEMPLATED)
    written = make("plain", plain())
    ok = "Everything is up to date."
    t = bench_interleaved({"1,000-stage matrix": ([*HPIPE, "status"], templated, ok),
                           "1,000 stages written out": ([*HPIPE, "status"], written, ok)}, args.reps)
    print(f"## Template expansion: no-op status of 1,000 generated stages ({args.reps} runs each, interleaved)\n")
    print(f"Machine: {where}; load average at end {loadavg()}; projects: {templated}, {written}\n")
    print(table(["pipeline", "min s", "median s"], [[k, v.min, v.median] for k, v in t.items()]))
    med = t["1,000-stage matrix"].median
    extra = med - t["1,000 stages written out"].median
    print(f"\nNo-op status of the 1,000-stage matrix: {med:.3f} s (the expansion: {1000 * extra:+.0f} ms over"
          f" the same stages written out); target < 1 s: {'met' if med < 1 else 'MISSED'}")
    summary("no-op `hpipe status`, 1,000-stage matrix", f"{med:.2f} s", "< 1 s", med < 1)


if __name__ == "__main__":
    main()
