"""No-op overhead: `hpipe repro`/`hpipe status` vs `dvc repro`/`dvc status` on an up-to-date 3-stage pipeline.

The pipeline (prepare -> train -> evaluate) reads a raw input file and params.yaml keys and
writes small files; hpipe and DVC get identical pipeline.yaml/dvc.yaml files in separate
folders under benchmarks/.work/. Each tool runs it fully once; then each no-op command gets
one warm-up and 7 timed runs (wall time of the whole process), the four commands interleaved
round-robin so load from other processes affects all alike. Target: hpipe <= 0.5x DVC.

With `--baseline PATH/TO/hpipe` (another install, e.g. the previous commit's), that hpipe is
timed too, on its own copy of the project, in the same round-robin: a regression check.

Run from the repo root:  .venv/bin/python benchmarks/bench_noop.py [--reps 7] [--no-dvc] [--baseline HPIPE]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from _common import (
    HPIPE,
    Job,
    bench_interleaved,
    dvc_version,
    ensure_dvc,
    loadavg,
    machine,
    ratio,
    run,
    summary,
    table,
    twin_projects,
    write_project,
)

PY = shlex.quote(sys.executable)
STAGES: dict[str, dict[str, object]] = {
    "prepare": {
        "cmd": f"mkdir -p data && {PY} -c \"import yaml; s = yaml.safe_load(open('params.yaml'))['prepare']['scale'];"
               f" rows = [float(x) * s for x in open('raw/data.csv').read().split()];"
               f" open('data/prepared.txt', 'w').write(chr(10).join(map(str, rows)))\"",
        "deps": ["raw/data.csv"], "params": ["prepare.scale"], "outs": ["data/prepared.txt"]},
    "train": {
        "cmd": f"{PY} -c \"import json, yaml; p = yaml.safe_load(open('params.yaml'))['train'];"
               f" xs = [float(x) for x in open('data/prepared.txt').read().split()];"
               f" json.dump({{'w': p['lr'] * sum(xs) * p['epochs']}}, open('model.json', 'w'))\"",
        "deps": ["data/prepared.txt"], "params": ["train.lr", "train.epochs"], "outs": ["model.json"]},
    "evaluate": {
        "cmd": f"{PY} -c \"import json; w = json.load(open('model.json'))['w'];"
               f" json.dump({{'score': w / 100}}, open('metrics.json', 'w'))\"",
        "deps": ["model.json", "data/prepared.txt"], "outs": ["metrics.json"]},
}
FILES = {
    "raw/data.csv": "\n".join(str(i % 97) for i in range(1000)) + "\n",
    "params.yaml": "prepare:\n  scale: 0.5\ntrain:\n  lr: 0.01\n  epochs: 3\n",
}
HPIPE_OK, DVC_OK = "Everything is up to date.", "Data and pipelines are up to date."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-dvc", action="store_true", help="time hpipe only")
    ap.add_argument("--baseline", type=Path, help="another hpipe executable, timed in the same run")
    args = ap.parse_args()
    dvc = None if args.no_dvc else ensure_dvc()
    hp_dir, dvc_dir = twin_projects("noop", STAGES, FILES, dvc)
    where = machine() + (f"; dvc {dvc_version(dvc)}" if dvc else "; DVC skipped")

    # The full first run doubles as a check that every stage runs in both tools.
    run([HPIPE, "repro"], hp_dir, expect="3 ran")
    cmds: dict[str, Job] = {"hpipe repro": ([HPIPE, "repro"], hp_dir, HPIPE_OK),
            "hpipe status": ([HPIPE, "status"], hp_dir, HPIPE_OK)}
    if args.baseline:
        base_dir = hp_dir.parent / "baseline"
        write_project(base_dir, STAGES, FILES, "pipeline.yaml")
        run([args.baseline, "repro"], base_dir, expect="3 ran")
        cmds |= {"baseline repro": ([args.baseline, "repro"], base_dir, HPIPE_OK),
                 "baseline status": ([args.baseline, "status"], base_dir, HPIPE_OK)}
    if dvc and dvc_dir:
        run([dvc, "repro"], dvc_dir, expect="Running stage 'evaluate'")
        cmds |= {"dvc repro": ([dvc, "repro"], dvc_dir, DVC_OK),
                 "dvc status": ([dvc, "status"], dvc_dir, "up to date")}
    t = bench_interleaved(cmds, args.reps)  # round-robin, so load from other processes hits all alike

    print(f"## No-op runs, 3-stage pipeline ({args.reps} timed runs each after 1 warm-up, interleaved)\n")
    print(f"Machine: {where}; load average at end {loadavg()}\n")
    rows: list[list[object]] = []
    for cmd in ("repro", "status"):
        h, d = t[f"hpipe {cmd}"], t.get(f"dvc {cmd}")
        rows.append([f"no-op {cmd}", h.median, h.min, d.median if d else "-", d.min if d else "-",
                     ratio(h.median, d.median) if d else "-", ratio(h.min, d.min) if d else "-"])
    print(table(["command", "hpipe median s", "hpipe min s", "dvc median s", "dvc min s",
                 "hpipe/dvc median", "hpipe/dvc min"], rows))
    if args.baseline:
        print(f"\nBaseline {args.baseline}:\n")
        print(table(["command", "this median s", "baseline median s", "this/baseline median", "this min s",
                     "baseline min s"],
                    [[f"no-op {c}", t[f"hpipe {c}"].median, t[f"baseline {c}"].median,
                      ratio(t[f"hpipe {c}"].median, t[f"baseline {c}"].median), t[f"hpipe {c}"].min,
                      t[f"baseline {c}"].min] for c in ("repro", "status")]))
    if dvc:
        worst = max(t[f"hpipe {c}"].median / t[f"dvc {c}"].median for c in ("repro", "status"))
        print(f"\nTarget hpipe <= 0.5x DVC (medians): {'met' if worst <= 0.5 else 'MISSED'}"
              f" (worst ratio {worst:.2f}x)")
        for c in ("repro", "status"):
            r = t[f"hpipe {c}"].median / t[f"dvc {c}"].median
            summary(f"no-op `{c}` vs DVC (3 stages)", f"{r:.2f}x", "<= 0.3x (issue 13)", r <= 0.3)

if __name__ == "__main__":
    main()
