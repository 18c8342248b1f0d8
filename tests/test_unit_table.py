"""Report tables as text (issue 9): fitting to a width without cutting a value, Markdown, CSV,
and the short names and ids the terminal shows."""

from __future__ import annotations

import csv
import io

from hangar_pipe.cli.table import columns_csv, columns_markdown, fit, left_out_note, render, terminal
from hangar_pipe.core.history import RunRecord
from hangar_pipe.reports import Column, metrics_columns, run_columns, run_prefixes, short_metric_names


def col(name: str, cells: list[str], rank: int, number: bool = False, compact: list[str] | None = None) -> Column:
    return Column(name, name, cells, cells, rank, number, compact)


def test_fit_keeps_columns_by_rank_in_their_order_and_never_cuts() -> None:
    columns = [col("run", ["20261128-133222"], 0), col("ran", ["train, evaluate (restored)"], 3),
               col("accuracy", ["0.9013"], 1, number=True), col("a_long_metric_name", ["1"], 2, number=True)]
    kept, left = fit(columns, 45)
    assert [c.name for c in kept] == ["run", "accuracy", "a_long_metric_name"]  # ran (26 wide) does not fit
    assert [c.name for c in left] == ["ran"]
    lines = render(kept)
    assert all(len(line) <= 45 for line in lines)
    assert lines[0].split() == ["run", "accuracy", "a_long_metric_name"]
    assert lines[2] == "20261128-133222    0.9013" + " " * 19 + "1"  # numbers right-aligned


def test_fit_tries_the_compact_form_and_always_keeps_the_first_column() -> None:
    ran = col("ran", ["ingest, clean, featurize, train, evaluate"], 1, compact=["5 ran"])
    kept, left = fit([col("run", ["20261128-133222"], 0), ran], 30)
    assert kept[1].brief == ["5 ran"] and not left
    kept, left = fit([col("run", ["x" * 50], 0), col("b", ["1"], 1)], 20)
    assert [c.name for c in kept] == ["run"] and [c.name for c in left] == ["b"]  # too wide, but whole


def test_columns_without_any_value_are_left_out_silently() -> None:
    kept, left = fit([col("run", ["r1", "r2"], 0), col("data commit", ["-", "-"], 1)], 80)
    assert [c.name for c in kept] == ["run"] and left == []


def test_terminal_table_fits_and_says_what_it_left_out() -> None:
    metrics = [col(f"recall.{i}", ["0.80123"], 2 + i, number=True) for i in range(10)]
    text = terminal([col("run", ["20261128-133222"], 0), *metrics], 60)
    lines = text.splitlines()
    assert all(len(line) <= 60 for line in lines) and "…" not in text
    assert lines[-1].startswith("Left out: recall.") and "--csv" in lines[-1]
    assert lines[-1].endswith("more (see --csv, --md or --json)")
    assert len(left_out_note([col(f"m{i}", ["1"], i) for i in range(40)], 30)) <= 30


def test_markdown_and_csv_carry_full_names_and_values() -> None:
    columns = [Column("run", "run", ["20261128-133222-75cd"], ["20261128-133222"], 0),
               Column("ran", "ran", ["train, evaluate | x"], ["train, evaluate | x"], 1),
               Column("metrics/eval.json:accuracy", "accuracy", ["0.9012345678"], ["0.9012"], 2, number=True)]
    md = columns_markdown(columns).splitlines()
    assert md[0] == "| run | ran | metrics/eval.json:accuracy |"
    assert md[1] == "|---|---|---:|"
    assert md[2] == "| 20261128-133222-75cd | train, evaluate \\| x | 0.9012 |"
    rows = list(csv.DictReader(io.StringIO(columns_csv(columns))))
    assert rows == [{"run": "20261128-133222-75cd", "ran": "train, evaluate | x",
                     "metrics/eval.json:accuracy": "0.9012345678"}]


def test_short_metric_names_and_run_prefixes() -> None:
    keys = [("metrics/eval.json", "accuracy"), ("metrics/eval.json", "loss"), ("metrics/train.json", "loss"),
            ("a/score.json", "value"), ("b/score.json", "value")]
    assert short_metric_names(keys) == {
        ("metrics/eval.json", "accuracy"): "accuracy", ("metrics/eval.json", "loss"): "eval:loss",
        ("metrics/train.json", "loss"): "train:loss", ("a/score.json", "value"): "a/score.json:value",
        ("b/score.json", "value"): "b/score.json:value"}
    every = ["20261128-133222-75cd", "20261128-133222-0d5c", "20261128-133149-5178"]
    assert run_prefixes(every[1:], every) == ["20261128-133222-0d5c", "20261128-133149"]


def record(run_id: str, metrics: dict[str, dict[str, float | int | str]], states: dict[str, str]) -> RunRecord:
    return RunRecord(run_id, 1_800_000_000.0, 1_800_000_008.5, 0, {}, "a=" + "6cee584e" * 5,
                     [{"name": n, "state": s} for n, s in states.items()], {}, metrics)


def test_report_columns_rank_headline_metrics_first() -> None:
    runs = [record("20270115-080000-aaaa", {"m/eval.json": {"precision.0": 0.5, "accuracy": 0.9, "note": "x"},
                                            "m/train.json": {"val_loss": 0.2, "val_accuracy": 0.8}},
                   {"train": "ran", "evaluate": "restored", "report": "skipped"})]
    columns = metrics_columns(runs, [r.id for r in runs], 4)
    assert [c.short for c in columns] == ["run", "data commit", "accuracy", "val_accuracy", "val_loss", "precision.0"]
    assert columns[1].full == ["a=" + "6cee584e" * 5] and columns[1].brief == ["a=6cee584e"]
    by_name = {c.name: c for c in run_columns(runs, [r.id for r in runs], 4)}
    assert by_name["ran"].brief == ["train, evaluate (restored)"] and by_name["ran"].compact == ["1 ran, 1 restored"]
    assert by_name["seconds"].brief == ["8.5s"] and by_name["m/eval.json:accuracy"].full == ["0.9"]
    assert "m/eval.json:precision.0" not in by_name  # `runs` shows three headline metrics
