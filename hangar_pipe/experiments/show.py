"""`hpipe exp show`: the points as report columns (reports.Column), for the terminal, --md and --csv."""

from __future__ import annotations

import json
from typing import Any

from hangar_pipe.core.layout import PARAMS_FILE
from hangar_pipe.errors import UserError, did_you_mean
from hangar_pipe.experiments.records import PointRecord
from hangar_pipe.reports import Column, exact, fmt, metric_keys, short, short_metric_names


def sort_points(points: list[PointRecord], by: str | None, descending: bool) -> list[PointRecord]:
    """By a metric (its short name or `file:name`); points without it last. Default: as run."""
    if by is None:
        return points
    keys = metric_keys([p.metrics for p in points])
    names = short_metric_names(keys)
    key = next((k for k in keys if by in (names[k], f"{k[0]}:{k[1]}")), None)
    if key is None:
        shown = [names[k] for k in keys]
        raise UserError(f"--sort-by: no metric '{by}'{did_you_mean(by, shown)}"
                        f" (metrics: {', '.join(shown) or 'none recorded'})")
    have = [p for p in points if isinstance(p.metrics.get(key[0], {}).get(key[1]), (int, float))]
    have.sort(key=lambda p: float(p.metrics[key[0]][key[1]] or 0), reverse=descending)
    return have + [p for p in points if p not in have]


def columns(points: list[PointRecord], precision: int, only_changed: bool = False) -> list[Column]:
    """Point, experiment, state, data commit, one column per override, metrics, time taken."""
    axes = list(dict.fromkeys((f, k) for p in points for f, keys in p.overrides.items() for k in keys))
    keys = metric_keys([p.metrics for p in points])
    names = short_metric_names(keys)
    commits = [p.data_commit for p in points]
    cols = [Column("point", "point", [p.id for p in points], [p.id for p in points], 0),
            Column("experiment", "experiment", [p.experiment for p in points],
                   [p.experiment for p in points], 6),
            Column("state", "state", [p.state for p in points], [p.state for p in points], 1),
            Column("data_commit", "data commit", [exact(c) for c in commits], [short(c) for c in commits], 4)]
    for f, k in axes:
        values = [p.overrides.get(f, {}).get(k) for p in points]
        name = k if f == PARAMS_FILE else f"{f}:{k}"
        cols.append(Column(name, name, [_text(v) for v in values], [_text(v) for v in values], 2))
    for i, key in enumerate(keys):
        values = [p.metrics.get(key[0], {}).get(key[1]) for p in points]
        cols.append(Column(f"{key[0]}:{key[1]}", names[key], [exact(v) for v in values],
                           [fmt(v, precision) for v in values], 3 + i, number=True))
    cols.append(Column("seconds", "took", [f"{p.seconds:.3f}" for p in points],
                       [f"{p.seconds:.1f}s" for p in points], 9, number=True))
    if only_changed and len(points) > 1:
        cols = [c for c in cols if c.rank <= 1 or len(set(c.full)) > 1]
    return cols


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return exact(value) if isinstance(value, (int, float, str, bool)) else json.dumps(value)
