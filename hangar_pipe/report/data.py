"""What the report page shows, as plain JSON-able data: runs, metrics per data commit, training
curves, confusion matrices and the pipeline graph. Pure reads; the page (page.py) draws it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hangar_pipe.core.history import RunRecord
from hangar_pipe.pipeline import Pipeline
from hangar_pipe.plots import curve_table, is_matrix, read_table
from hangar_pipe.reports import metric_keys, short_metric_names

MAX_RUNS = 200  # the newest runs in the table (and their curves, when the cache has them)
HEADLINE = 4  # metrics in the table and the per-commit chart


def collect(pipeline: Pipeline) -> dict[str, Any]:
    """The page's data: {"title", "made", "metrics", "runs", "commits", "curves", "matrices", "graph"}."""
    runs = [r for r in pipeline.runs(MAX_RUNS) if not r.noop]
    keys = metric_keys([r.metrics for r in runs])[:HEADLINE]
    names = short_metric_names(keys)
    return {
        "title": f"hpipe report: {pipeline.root.name}",
        "made": datetime.now().astimezone().isoformat(timespec="seconds"),
        "metrics": [names[k] for k in keys],
        "runs": [_run_row(r, keys) for r in runs],
        "commits": _commits(runs, keys, names),
        "curves": _curves(pipeline, runs),
        "matrices": _matrices(pipeline),
        "graph": graph_layout(pipeline),
    }


def _run_row(run: RunRecord, keys: list[tuple[str, str]]) -> dict[str, Any]:
    return {"id": run.id, "when": datetime.fromtimestamp(run.started).astimezone().strftime("%Y-%m-%d %H:%M"),
            "data": (run.data_commit or "")[:10], "experiment": run.tags.get("experiment", ""),
            "point": run.tags.get("point", ""), "overrides": run.tags.get("overrides", ""),
            "status": run.status, "seconds": round(max(run.ended - run.started, 0.0), 2),
            "ran": ", ".join(s["name"] for s in run.stages if s["state"] == "ran"),
            "values": [run.metrics.get(f, {}).get(k) for f, k in keys]}


def _commits(runs: list[RunRecord], keys: list[tuple[str, str]], names: dict[tuple[str, str], str]
             ) -> dict[str, Any]:
    """Each headline metric per data commit, oldest commit first: the latest plain run's value
    (a line), and every experiment point's (dots)."""
    order: list[str] = []
    for run in reversed(runs):  # oldest first
        if run.data_commit and run.data_commit[:10] not in order:
            order.append(run.data_commit[:10])
    lines: dict[str, dict[str, float]] = {}
    dots: list[dict[str, Any]] = []
    for run in reversed(runs):
        if not run.data_commit or run.status != 0:
            continue
        for f, k in keys:
            value = run.metrics.get(f, {}).get(k)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if "experiment" in run.tags:
                dots.append({"metric": names[(f, k)], "commit": run.data_commit[:10], "value": value,
                             "label": run.tags.get("overrides", "")})
            else:
                lines.setdefault(names[(f, k)], {})[run.data_commit[:10]] = value
    return {"order": order, "lines": lines, "dots": dots}


def _curves(pipeline: Pipeline, runs: list[RunRecord]) -> dict[str, Any]:
    """{plot file: {run id: {"header": [...], "rows": [[...]]}}} for curve plots the cache holds."""
    found: dict[str, Any] = {}
    for key, files in pipeline.run_plot_files(runs):
        for run, path in files:
            if table := curve_table(path, key):
                found.setdefault(key, {})[run.id] = {"header": table[0], "rows": _numbers(table[1])}
    return found


def _numbers(rows: list[list[str]]) -> list[list[float | None]]:
    def number(cell: str) -> float | None:
        try:
            return float(cell)
        except ValueError:
            return None
    return [[number(c) for c in row] for row in rows]


def _matrices(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The confusion matrices among the plot files as they are now."""
    found = []
    for key, path in pipeline.plot_files():
        header, rows = read_table(path)
        if is_matrix(header):
            found.append({"name": key, "labels": header[1:], "actual": [r[0] for r in rows],
                          "counts": [[int(float(v or 0)) for v in r[1:]] for r in rows]})
    return found


def graph_layout(pipeline: Pipeline) -> dict[str, Any]:
    """Stages in layers (a stage one layer below the deepest stage it reads from), and the edges."""
    upstream = pipeline.graph.upstream
    layer: dict[str, int] = {}
    for name in pipeline.graph.order():
        layer[name] = 1 + max((layer[u] for u in upstream[name]), default=-1)
    rows: dict[int, list[str]] = {}
    for name in pipeline.graph.order():
        rows.setdefault(layer[name], []).append(name)
    nodes = [{"name": n, "layer": depth, "slot": i, "uses": pipeline.stages[n].uses or "cmd"}
             for depth, names in sorted(rows.items()) for i, n in enumerate(names)]
    edges = [[u, name] for name in pipeline.graph.order() for u in sorted(upstream[name])]
    return {"nodes": nodes, "edges": edges}

