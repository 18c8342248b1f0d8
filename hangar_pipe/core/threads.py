"""How many CPU threads a built-in stage uses: chosen by the run, recorded, and reused.

The bytes a training writes depend on its thread count (sums of floats taken in another order),
so the count is part of what makes a result reproducible, like the seed:

- `hpipe repro --threads N` gives it. Without it, `auto`: the cores this process may use, split
  among the stages that may run at once (`-j`), at least one each.
- A stage whose inputs ran before (`--verify`, `-f`, `--data-commit` retraining, a clone that
  reruns) uses the count that earlier run recorded, so another machine with another core count
  writes the same bytes. `--threads` still wins, and a count that differs from the recorded one
  is said.
- The count reaches the stage as HPIPE_THREADS and is recorded in its lock entry (`threads`),
  and so in the run cache; the train and evaluate stages also record it in their metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "HPIPE_THREADS"


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto(jobs: int) -> int:
    return max(1, cores() // max(1, jobs))


@dataclass(frozen=True)
class Choice:
    """A stage's thread count, why, and what is worth saying about it (None: nothing)."""

    count: int
    why: str
    note: str | None = None


def choose(given: int | None, jobs: int, recorded: tuple[str, int] | None) -> Choice:
    """The count for a stage: `--threads`, else the one recorded for the same inputs, else auto.

    `recorded`: (the earlier run's id, its count), when one with the same inputs is known.
    """
    if given is not None:
        note = (f"{given} threads (--threads); run {recorded[0]} with the same inputs used {recorded[1]}:"
                " results may differ in the last bits") if recorded and recorded[1] != given else None
        return Choice(given, "--threads", note)
    if recorded is not None:
        count, default = recorded[1], auto(jobs)
        note = (f"{count} threads, as run {recorded[0]} with the same inputs recorded ({default} would be"
                f" the default here)") if count != default else None
        return Choice(count, f"as recorded by run {recorded[0]}", note)
    return Choice(auto(jobs), f"{cores()} cores / -j {jobs}")


def recorded_count(entry: dict[str, object]) -> int | None:
    """The thread count a lock or run-cache entry recorded, if any."""
    value = entry.get("threads")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
