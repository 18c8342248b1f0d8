"""`hpipe plots`: a PNG per plot file of the pipeline, and an index.html showing them all.

- A CSV/TSV whose first header cell starts with `actual` is a confusion matrix: a heatmap with
  the counts written in the cells.
- Any other CSV/TSV (or JSON list of records / mapping of lists) is curves against its first
  column: losses on one panel, accuracies on another, anything else on a third.
- `hpipe plots --runs A B ...` overlays the curves of one plot file as several runs (or
  experiment points) wrote it, read back from the object cache: one figure per file.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path, PurePosixPath
from typing import Any


def read_table(path: Path, suffix: str | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV, TSV or JSON plot file; `suffix` for a file named otherwise (a
    cache object is named by its hash)."""
    suffix = suffix or path.suffix
    if suffix == ".json":
        data: Any = json.loads(path.read_text())
        if isinstance(data, dict):
            header = list(data)
            return header, [list(map(str, r)) for r in zip(*(data[h] for h in header))]
        header = list(data[0]) if data else []
        return header, [[str(rec.get(h, "")) for h in header] for rec in data]
    delimiter = "\t" if suffix == ".tsv" else ","
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    return (rows[0], rows[1:]) if rows else ([], [])


def _value(cell: str) -> float:
    """A cell's number; an empty one (an epoch without validation, say) is no point: the curve
    joins the points on either side."""
    return float(cell) if cell not in ("", "None", "null") else math.nan


def _panels(columns: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {"loss": [], "accuracy": [], "value": []}
    for col in columns:
        low = col.lower()
        groups["loss" if "loss" in low else "accuracy" if "acc" in low else "value"].append(col)
    return [(name, cols) for name, cols in groups.items() if cols]


def is_matrix(header: list[str]) -> bool:
    """A confusion matrix's table (its first header cell starts with `actual`)."""
    return bool(header) and header[0].lower().startswith("actual")


def curve_table(path: Path, key: str) -> tuple[list[str], list[list[str]]] | None:
    """The table of plot file `key` stored at `path` (a cache object: read by the key's suffix),
    or None when it is no curve plot (a confusion matrix, or empty)."""
    header, rows = read_table(path, PurePosixPath(key).suffix)
    return (header, rows) if header and not is_matrix(header) else None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_overlay(runs: list[tuple[str, Path]], out: Path, title: str) -> None:
    """One plot file (`title`: its name) as several runs wrote it, each (label, file): every
    run's curves on the same panels, labelled `label: column`."""
    plt = _pyplot()
    tables = [(label, *read_table(path, PurePosixPath(title).suffix)) for label, path in runs]
    panels = _panels(list(dict.fromkeys(c for _, header, _ in tables for c in header[1:])))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (name, cols) in zip(axes[0], panels):
        for label, header, rows in tables:
            for col in (c for c in cols if c in header):
                i = header.index(col)
                points = [(float(r[0]), v) for r in rows if not math.isnan(v := _value(r[i]))]
                ax.plot([a for a, _ in points], [v for _, v in points], marker="o", markersize=3,
                        label=f"{label}: {col}")
        ax.set_xlabel(tables[0][1][0] if tables[0][1] else "")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def render(path: Path, out: Path, title: str) -> None:
    plt = _pyplot()
    header, rows = read_table(path)
    if is_matrix(header):
        labels = header[1:]
        matrix = [[int(float(v)) for v in r[1:]] for r in rows]
        fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 0.6 + 0.6 * len(labels)))
        image = ax.imshow(matrix, cmap="Blues")
        peak = max((max(r) for r in matrix), default=0)
        for i, r in enumerate(matrix):
            for j, v in enumerate(r):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > peak / 2 else "black")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        fig.colorbar(image, ax=ax, fraction=0.046)
    else:
        x = [float(r[0]) for r in rows]
        panels = _panels(header[1:])
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        for ax, (name, cols) in zip(axes[0], panels):
            for col in cols:
                i = header.index(col)
                points = [(a, v) for a, v in zip(x, (_value(r[i]) for r in rows)) if not math.isnan(v)]
                ax.plot([a for a, _ in points], [v for _, v in points], marker="o", markersize=3, label=col)
            ax.set_xlabel(header[0])
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def render_all(files: list[tuple[str, Path]], folder: Path) -> list[Path]:
    """Render each (title, file) to folder/<name>.png and write folder/index.html."""
    folder.mkdir(parents=True, exist_ok=True)
    pngs = []
    for title, path in files:
        png = folder / (title.replace("/", "_").rsplit(".", 1)[0] + ".png")
        render(path, png, title)
        pngs.append(png)
    items = "\n".join(f'<h2>{html.escape(t)}</h2>\n<img src="{html.escape(p.name)}" alt="{html.escape(t)}">'
                      for (t, _), p in zip(files, pngs))
    (folder / "index.html").write_text(
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>hpipe plots</title></head>\n"
        f"<body style='font-family: sans-serif'>\n<h1>Plots</h1>\n{items}\n</body></html>\n")
    return pngs
