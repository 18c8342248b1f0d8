"""SIGKILL at random moments of a real pipeline (Hangar ingest, a folder out, train, evaluate, the
run cache): every next run recovers with no manual step, no stage runs twice at once, nothing is
corrupted or lost. benchmarks/bench_kill.py runs 100 such trials; the suite runs a few."""

from __future__ import annotations

from pathlib import Path

from kill_trials import run_trials


def test_random_sigkills_recover_without_overlap_or_loss(tmp_path: Path) -> None:
    figures = run_trials(tmp_path, count=3, seed=2026)  # bench_kill.py runs many more
    assert figures.problems == []
    assert figures.trials == figures.recovered == 3
    assert figures.overlaps == figures.corrupted == figures.lost_commits == 0
