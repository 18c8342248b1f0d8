#!/usr/bin/env bash
# Run every benchmark in order; Markdown results go to stdout, then one table of every target:
# the figure, the target and whether it is met. From the repo root: bash benchmarks/run_all.sh
# Takes about 45 minutes (DVC up to 200 stages; Hangar repos are built once; bench_remote about 12, bench_exp about 8). PY overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
status=0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for bench in bench_noop bench_startup bench_instructions bench_scaling bench_template bench_hash bench_imports bench_hangar bench_hangar_status bench_loader bench_stream bench_train bench_demo bench_loop bench_exp bench_map bench_cache bench_remote bench_resume; do
    echo "<!-- $bench -->"
    "$PY" "benchmarks/$bench.py" | tee -a "$log" || { echo "$bench failed with exit code $?" >&2; status=1; }
    echo
done
echo "## Summary: every target, this run"
echo
"$PY" - "$log" <<'PY'
import json, re, sys
rows = [json.loads(m) for m in re.findall(r"<!-- summary: (.*) -->", open(sys.argv[1]).read())]
print("| what | measured | target | met |\n|---|---|---|---|")
for r in rows:
    print(f"| {r['what']} | {r['measured']} | {r['target']} | {r['met']} |")
PY
exit "$status"
