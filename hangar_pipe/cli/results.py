"""`hpipe metrics`, `params`, `runs`, `plots`, `report` and `gc`: what the runs produced, and cleaning up after them."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from hangar_pipe.cli.app import Arg, arg, at_least, command, group, opt, terminal_width
from hangar_pipe.cli.console import out, print_table
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

if TYPE_CHECKING:
    from hangar_pipe.core.history import RunRecord
    from hangar_pipe.reports import Column

METRICS = group("metrics", "Metrics the stages write (their `metrics:` files).")
PARAMS = group("params", "Params the stages read.")

JSON = opt("--json", dest="as_json", flag=True, help="Print JSON.")
MD = opt("--md", flag=True, help="Print a Markdown table.")
CSV = opt("--csv", dest="as_csv", flag=True, help="Print CSV: every column, exact values.")
FORMATS = [JSON, MD, CSV]


def precision(default: int) -> Arg:
    return opt("--precision", type=at_least(1), default=default, metavar="N",
               help=f"Significant digits (default: {default}).")


DIFF = [arg("a", nargs="?", metavar="OLD", help="Old side: lock (default), workspace, a run id, data:<commit>,"
                                                " or a git revision of pipeline.lock."),
        arg("b", nargs="?", metavar="NEW", help="New side (default: workspace)."),
        JSON, MD, opt("--all", dest="show_all", flag=True, help="Also unchanged values."), precision(5)]


def _format(as_json: bool, md: bool, as_csv: bool) -> str:
    """'json', 'md', 'csv' or 'table' (the default): at most one of the flags."""
    chosen = [name for name, on in (("json", as_json), ("md", md), ("csv", as_csv)) if on]
    if len(chosen) > 1:
        raise UserError("choose one of --json, --md and --csv")
    return chosen[0] if chosen else "table"


def _print_columns(columns: "list[Column]", form: str, empty: str) -> None:
    """A report table as CSV, Markdown, or fitted to the terminal (`empty` when it has no row)."""
    from hangar_pipe.cli import table

    if form == "csv":
        out(table.columns_csv(columns))
    elif form == "md":
        out(table.columns_markdown(columns))
    elif not columns[0].full:
        out(empty)
    else:
        out(table.terminal(columns, terminal_width()))


@command(METRICS, "show", args=[
    *FORMATS, opt("--runs", flag=True, help="Metrics of every recorded run, newest first."),
    opt("-n", type=at_least(1), default=20, help="With --runs: how many runs (default: 20)."), precision(5)])
def metrics_show(as_json: bool, md: bool, as_csv: bool, runs: bool, n: int, precision: int) -> None:
    """Every stage's metrics, nested keys flattened to dotted names (or across runs, with --runs).

    Example: `hpipe metrics show --runs --csv > runs.csv`.
    """
    from hangar_pipe import reports

    form = _format(as_json, md, as_csv)
    pipeline = Pipeline.load()
    if runs:
        every = pipeline.runs()
        if form == "json":
            out(json.dumps([{"id": r.id, "data_commit": r.data_commit, "metrics": r.metrics}
                            for r in every[:n]], indent=2))
            return
        columns = reports.metrics_columns(every[:n], [r.id for r in every], precision)
        _print_columns(columns, form, "No runs recorded yet.")
        return
    values = pipeline.metrics()
    if form == "json":
        out(json.dumps(values, indent=2))
        return
    if form == "csv":
        from hangar_pipe.cli.table import csv_text

        out(csv_text(["file", "metric", "value"],
                     [[f, k, reports.exact(v)] for f, vs in values.items() for k, v in vs.items()]))
        return
    rows = [[f, k, reports.fmt(v, precision)] for f, vs in values.items() for k, v in vs.items()]
    print_table("Metrics", ["file", "metric", "value"], rows, form == "md")


@command("runs", args=[
    *FORMATS, opt("-n", type=at_least(1), default=20, help="How many runs (default: 20)."),
    opt("--all", dest="show_all", flag=True, help="Also runs that ran nothing (--json has them all)."), precision(4)])
def runs(as_json: bool, md: bool, as_csv: bool, n: int, show_all: bool, precision: int) -> None:
    """The recorded runs, newest first: data commit, headline metrics, what ran, when.

    The table fits the terminal (80 columns when piped); --csv and --md have every column in full.

    Example: `hpipe runs -n 5 --md`.
    """
    from hangar_pipe import reports

    form = _format(as_json, md, as_csv)
    every = Pipeline.load().runs()
    if form == "json":
        out(json.dumps([r.to_dict() for r in every[:n]], indent=2, default=str))
        return
    shown = [r for r in every if show_all or not r.noop][:n]
    empty = (f"No run ran anything; --all shows the {len(every)} that did nothing." if every
             else "No runs recorded yet.")
    _print_columns(reports.run_columns(shown, [r.id for r in every], precision), form, empty)


def _diff(kind: str, a: str | None, b: str | None, as_json: bool, md: bool, show_all: bool,
          precision: int) -> None:
    from hangar_pipe import reports

    pipeline = Pipeline.load()
    at = reports.metrics_at if kind == "metrics" else reports.params_at
    old_source, new_source = (a or "lock"), (b or "workspace")
    rows = reports.diff(at(pipeline, old_source), at(pipeline, new_source), everything=show_all)
    if as_json:
        out(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        out(f"No {kind} changed between {old_source} and {new_source}.")
        return
    body = [[r.file, r.name, reports.fmt(r.old, precision), reports.fmt(r.new, precision),
             reports.fmt(r.change, precision)] for r in rows]
    print_table(f"{kind.capitalize()}: {old_source} -> {new_source}",
                ["file", kind[:-1] if kind == "params" else "metric", "old", "new", "change"], body, md)


@command(METRICS, "diff", args=DIFF)
def metrics_diff(a: str | None, b: str | None, as_json: bool, md: bool, show_all: bool, precision: int) -> None:
    """How metrics moved: the values recorded in pipeline.lock vs the files now, by default.

    Example: `hpipe metrics diff HEAD~1` compares with the lock of the previous git commit.
    """
    _diff("metrics", a, b, as_json, md, show_all, precision)


@command(PARAMS, "show", args=[JSON, MD, precision(5)])
def params_show(as_json: bool, md: bool, precision: int) -> None:
    """Every param the stages read, as it is now (dotted keys).

    Example: `hpipe params show --md` for a pull-request comment.
    """
    from hangar_pipe import reports

    table = Pipeline.load().params()
    if as_json:
        out(json.dumps(table, indent=2))
        return
    rows = [[f, k, reports.fmt(v, precision)] for f, values in table.items() for k, v in values.items()]
    print_table("Params", ["file", "param", "value"], rows, md)


@command(PARAMS, "diff", args=DIFF)
def params_diff(a: str | None, b: str | None, as_json: bool, md: bool, show_all: bool, precision: int) -> None:
    """How params moved: the values recorded in pipeline.lock vs params files now, by default.

    Example: `hpipe params diff main` shows what this branch changed.
    """
    _diff("params", a, b, as_json, md, show_all, precision)


@command("gc", args=[opt("--keep-runs", type=at_least(0), metavar="N",
                          help="Keep the run-cache results of the newest N runs only."),
                      opt("-n", "--dry-run", flag=True, help="Say what would be removed; remove nothing.")])
def gc(keep_runs: int | None, dry_run: bool) -> None:
    """Remove cache objects, run-cache entries, cached columns and resume states that nothing needs.

    Example: `hpipe gc --keep-runs 10 --dry-run` says what keeping the last 10 runs would free.
    """
    freed = Pipeline.load().gc(keep_runs, dry_run)
    verb = "Would remove" if dry_run else "Removed"
    states = (f" and {freed['state_folders']} resume states ({freed['state_bytes'] / 1e6:.1f} MB)"
              if freed["state_folders"] else "")
    out(f"{verb} {freed['objects']} cache objects ({freed['bytes'] / 1e6:.1f} MB),"
        f" {freed['column_entries']} cached columns ({freed['column_bytes'] / 1e6:.1f} MB)"
        f"{',' if states else ' and'} {freed['run_cache_entries']} run-cache entries{states}.")


@command("plots", args=[opt("-o", "--out", dest="output", type=Path, default=Path("hpipe_plots"), metavar="FOLDER",
                             help="Folder for the PNGs and index.html (default: hpipe_plots)."),
                         opt("--runs", nargs="+", metavar="RUN",
                             help="Overlay the curves of these runs (ids, data:<commit>, or experiment"
                                  " point ids) instead, one figure per plot file.")])
def plots(output: Path, runs: list[str] | None) -> None:
    """Render every `plots:` file to a PNG, plus an index.html showing them all.

    Example: `hpipe plots --runs 20261129-0930 3fa2c1d0 -o compare` overlays two runs' curves.
    """
    pipeline = Pipeline.load()
    written = pipeline.plots(output) if runs is None else _run_plots(pipeline, runs, output)
    for path in written:
        out(f"wrote {path}")


def _run_plots(pipeline: Pipeline, refs: list[str], folder: Path) -> list[Path]:
    from hangar_pipe.plots import curve_table, render_overlay

    records = [find_run(pipeline, ref) for ref in refs]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, files in pipeline.run_plot_files(records):
        curves = [(run_label(run), path) for run, path in files if curve_table(path, key)]
        if not curves:
            continue
        png = folder / (key.replace("/", "_").rsplit(".", 1)[0] + ".png")
        render_overlay(curves, png, key)
        written.append(png)
    if not written:
        raise UserError("none of these runs left a curve plot in the cache (declare plots: files, and"
                        " see `hpipe gc`)")
    return written


def find_run(pipeline: Pipeline, ref: str) -> "RunRecord":
    """A run by id, prefix or data:<commit>, or the run of an experiment point (its id or prefix)."""
    try:
        return pipeline.history.find(ref)
    except UserError as exc:
        from hangar_pipe.experiments import records

        try:
            point = records.find(pipeline.root, ref)
        except UserError:
            raise exc from None
        if point.run_id is None:
            raise UserError(f"point {point.id} has no recorded run") from None
        return pipeline.history.find(point.run_id)


def run_label(run: "RunRecord") -> str:
    """A run's name in a legend: its point's overrides, else its id's date and time."""
    return run.tags.get("overrides") or run.id[:15]


@command("report", args=[opt("-o", "--out", dest="output", type=Path, default=Path("hpipe_report.html"), metavar="FILE",
                              help="Where to write the page (default: hpipe_report.html)."),
                          opt("--open", dest="open_it", flag=True, help="Open it in the web browser.")])
def report(output: Path, open_it: bool) -> None:
    """One self-contained HTML page: runs and experiment points (sortable), metrics across data
    commits, training curves of the runs you tick, confusion matrices and the pipeline graph.

    Example: `hpipe report --open`.
    """
    from hangar_pipe.report import data, page

    written = page.write(data.collect(Pipeline.load()), output)
    out(f"wrote {written}")
    if open_it:
        import webbrowser

        webbrowser.open(written.resolve().as_uri())
