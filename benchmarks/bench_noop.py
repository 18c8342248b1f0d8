"""No-op overhead: `hpipe repro`/`hpipe status` vs `dvc repro`/`dvc status` on an up-to-date 3-stage pipeline.

The pipeline (prepare -> train -> evaluate) reads a raw input file and params.yaml keys and
writes small files; hpipe and DVC get identical pipeline.yaml/dvc.yaml files in separate
folders under benchmarks/.work/. Each tool runs it fully once; then each no-op command gets
one warm-up and 7 timed runs (wall time of the whole process). Target: hpipe <= 0.5x DVC.

Run from the repo root:  .venv/bin/python benchmarks/bench_noop.py [--reps 7] [--no-dvc]
"""

from __future__ import annotations

import argparse
import shlex
import sys

from _common import HPIPE, Timing, bench, dvc_version, ensure_dvc, machine, ratio, table, twin_projects

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
    args = ap.parse_args()
    dvc = None if args.no_dvc else ensure_dvc()
    hp_dir, dvc_dir = twin_projects("noop", STAGES, FILES, dvc)

    hp: dict[str, Timing] = {}
    dv: dict[str, Timing] = {}
    # The first run doubles as a check that every stage runs in both tools.
    bench([HPIPE, "repro"], hp_dir, reps=0, warmup=1, expect="3 ran")
    hp["repro"] = bench([HPIPE, "repro"], hp_dir, args.reps, expect=HPIPE_OK)
    hp["status"] = bench([HPIPE, "status"], hp_dir, args.reps, expect=HPIPE_OK)
    if dvc and dvc_dir:
        bench([dvc, "repro"], dvc_dir, reps=0, warmup=1, expect="Running stage 'evaluate'")
        dv["repro"] = bench([dvc, "repro"], dvc_dir, args.reps, expect=DVC_OK)
        dv["status"] = bench([dvc, "status"], dvc_dir, args.reps, expect="up to date")

    print(f"## No-op runs, 3-stage pipeline ({args.reps} timed runs after 1 warm-up)\n")
    print(f"Machine: {machine()}" + (f"; dvc {dvc_version(dvc)}" if dvc else "; DVC skipped") + "\n")
    rows: list[list[object]] = []
    for cmd in ("repro", "status"):
        h = hp[cmd]
        d = dv.get(cmd)
        rows.append([f"no-op {cmd}", h.median, h.min, d.median if d else "-", d.min if d else "-",
                     ratio(h.median, d.median) if d else "-"])
    print(table(["command", "hpipe median s", "hpipe min s", "dvc median s", "dvc min s",
                 "hpipe/dvc (median)"], rows))
    if dv:
        worst = max(hp[c].median / dv[c].median for c in hp)
        print(f"\nTarget hpipe <= 0.5x DVC: {'met' if worst <= 0.5 else 'MISSED'} (worst ratio {worst:.2f}x)")


if __name__ == "__main__":
    main()
