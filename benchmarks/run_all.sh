#!/usr/bin/env bash
# Run every benchmark in order; Markdown results go to stdout. From the repo root: bash benchmarks/run_all.sh
# Takes about 35 minutes (DVC up to 200 stages; 50k-sample Hangar repos are built once; bench_remote about 12). PY overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
status=0
for bench in bench_noop bench_instructions bench_scaling bench_hash bench_imports bench_hangar bench_loader bench_stream bench_train bench_demo bench_loop bench_cache bench_remote bench_resume; do
    echo "<!-- $bench -->"
    "$PY" "benchmarks/$bench.py" || { echo "$bench failed with exit code $?" >&2; status=1; }
    echo
done
exit "$status"
