"""Import cost of the CLI, and a check that no-op `status`/`repro` never import torch or hangar.

Runs `python -X importtime -m hangar_pipe.cli status` (and `repro`) in an up-to-date 1-stage
project under benchmarks/.work/imports, parses the import log, and prints the total import time,
the time to import hangar_pipe.cli alone, and the 8 modules with the largest cumulative time.
Exits 1 if `torch` or `hangar` (or any of their submodules) is imported.

Run from the repo root:  .venv/bin/python benchmarks/bench_imports.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _common import ENV, HPIPE, Cmd, bench_interleaved, loadavg, machine, run, table, twin_projects

FORBIDDEN = {"torch", "hangar"}
STAGES: dict[str, dict[str, object]] = {
    "copy": {"cmd": "cp in.txt out.txt", "deps": ["in.txt"], "params": ["n"], "outs": ["out.txt"]}}
FILES = {"in.txt": "hello\n", "params.yaml": "n: 1\n"}
REPS = 5


@dataclass
class Entry:
    module: str
    depth: int  # 0 = imported directly by the running code, 1 = by a depth-0 module, ...
    self_us: int
    cumulative_us: int


@dataclass
class Trace:
    wall: float
    entries: list[Entry]

    @property
    def total_ms(self) -> float:
        """All import time of the process (nested imports are inside their parent's cumulative)."""
        return sum(e.cumulative_us for e in self.entries if e.depth == 0) / 1000

    def forbidden(self) -> list[str]:
        return sorted({e.module for e in self.entries if e.module.split(".")[0] in FORBIDDEN})

    def cumulative_ms(self, module: str) -> float:
        return next(e.cumulative_us for e in self.entries if e.module == module) / 1000


def importtime(args: list[str], cwd: Path) -> Trace:
    """Run `python -X importtime ARGS` and parse its stderr log."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr[-3000:]}")
    entries = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        stripped = name.lstrip()
        depth = (len(name) - len(stripped) - 1) // 2
        entries.append(Entry(stripped.strip(), depth, int(self_us), int(cumulative_us)))
    return Trace(wall, entries)


def typical(args: list[str], cwd: Path) -> Trace:
    """One warm-up, then the run with the median total import time of REPS runs."""
    importtime(args, cwd)
    traces = sorted((importtime(args, cwd) for _ in range(REPS)), key=lambda t: t.total_ms)
    return traces[len(traces) // 2]


def main() -> None:
    where = machine()
    folder, _ = twin_projects("imports", STAGES, FILES, None)
    run([HPIPE, "repro"], folder, expect="1 ran")
    cli = ["-m", "hangar_pipe.cli"]
    traces = {cmd: typical([*cli, cmd], folder) for cmd in ("status", "repro")}
    alone = [importtime(["-c", "import hangar_pipe.cli"], folder).cumulative_ms("hangar_pipe.cli")
             for _ in range(REPS)]
    py = sys.executable
    steps: dict[str, Cmd] = {  # wall time without -X importtime, each step adding to the one before
        "python -c pass (interpreter start)": [py, "-c", "pass"],
        "python -c 'import hangar_pipe.cli'": [py, "-c", "import hangar_pipe.cli"],
        "hpipe status (whole command)": [HPIPE, "status"],
    }
    walls = {k: t.median for k, t in bench_interleaved({k: (c, folder, None) for k, c in steps.items()}).items()}

    print("## Imports of the hpipe CLI (no-op pipeline)\n")
    print(f"Machine: {where}; load average at end {loadavg()}\n")
    rows = [[f"python -m hangar_pipe.cli {cmd}", f"{t.wall:.3f}", f"{t.total_ms:.1f}", len(t.entries),
             ", ".join(t.forbidden()) or "none"] for cmd, t in traces.items()]
    print(table(["command (median of 5 by import time)", "wall s", "all imports ms", "modules",
                 "torch/hangar imported"], rows))
    print(f"\n`import hangar_pipe.cli` alone: {statistics.median(alone):.1f} ms cumulative"
          f" (median of {REPS}, min {min(alone):.1f} ms)\n")
    print(table(["wall time without -X importtime (median of 7, interleaved)", "s"],
                [[k, v] for k, v in walls.items()]))
    print()
    top = sorted(traces["status"].entries, key=lambda e: -e.cumulative_us)[:8]
    print("Top 8 modules by cumulative import time (`status`; nesting 0 = a top-level import):\n")
    print(table(["module", "nesting", "self ms", "cumulative ms"],
                [[e.module, e.depth, f"{e.self_us / 1000:.1f}", f"{e.cumulative_us / 1000:.1f}"] for e in top]))
    bad = sorted({m for t in traces.values() for m in t.forbidden()})
    print(f"\nCheck (no torch, no hangar): {'FAILED: ' + ', '.join(bad[:10]) if bad else 'passed'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
