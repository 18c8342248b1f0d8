"""Run history: every `hpipe repro` is recorded; runs, metrics across runs, diffs between runs."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import time

import numpy as np
import pytest
from conftest import ENV, Project, user_error
from hangar_repo import Repo, labels

from hangar_pipe.hangar.store import HangarStore


def runs(project: Project) -> list[dict]:
    return json.loads(project.hpipe("runs", "--json").out)


def test_every_repro_is_recorded(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.hpipe("repro")
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
    three_stage.hpipe("repro")
    newest, noop, first = runs(three_stage)
    assert [s["name"] for s in first["stages"] if s["state"] == "ran"] == ["prepare", "train", "evaluate"]
    assert [s["state"] for s in noop["stages"]] == ["skipped"] * 3
    assert newest["stages"][1]["reasons"] == {"changed params": {"params.yaml": {"train.lr": "modified"}}}
    assert first["status"] == 0 and first["ended"] >= first["started"]
    assert first["params"]["params.yaml"]["train.lr"] == 0.1 and newest["params"]["params.yaml"]["train.lr"] == 0.2
    assert first["metrics"] == {"metrics.json": {"score": 12}}
    header, _, *rows = three_stage.hpipe("runs").out.splitlines()
    assert "score" in header.split() and rows[-1].startswith(first["id"][:15])
    assert "prepare, train, evaluate" in rows[-1] and " 12 " in rows[-1]


def test_failed_and_interrupted_runs_are_recorded(project: Project) -> None:
    project.pipeline("""
        stages:
          bad:
            cmd: exit 4
            outs: [never.txt]
    """)
    project.hpipe("repro", check=1)
    project.pipeline("""
        stages:
          slow:
            cmd: sleep 60 & echo $! > sleep.pid; wait
            outs: [slow.txt]
    """)
    proc = project.popen("repro")
    deadline = time.monotonic() + 30
    while not (project.root / "sleep.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    interrupted, failed = runs(project)
    assert failed["status"] == 1 and failed["stages"][0]["state"] == "failed"
    assert "code 4" in failed["stages"][0]["error"]
    assert interrupted["status"] == 130 and interrupted["stages"][0]["state"] == "interrupted"


def test_metrics_and_params_across_runs_and_data_commits(project: Project) -> None:
    data = Repo(project.root)
    first = data.write("first", labels=labels(10))
    project.write("score.py", """
        import json
        from hangar_pipe.data import open_columns
        with open_columns(["labels"]) as cols:
            col = cols["labels"]
            total, n = sum(int(col[k][0]) for k in col.keys()), len(col)
        json.dump({"label_sum": total, "nested": {"n": n}}, open("metrics.json", "w"))
    """)
    project.write("params.yaml", "score: {weight: 1}\n")
    project.pipeline("""
        stages:
          score:
            cmd: python score.py
            deps: [score.py, {hangar: [labels]}]
            params: [score]
            metrics: [metrics.json]
    """)
    project.hpipe("repro")
    second = data.write("relabel", labels={0: np.array([9], dtype=np.int64)})
    project.write("params.yaml", "score: {weight: 2}\n")
    project.hpipe("repro")
    newer, older = runs(project)
    assert older["data_commit"] == first and newer["data_commit"] == second
    assert older["data"] == {".@master": first} and newer["data"] == {".@master": second}

    across = json.loads(project.hpipe("metrics", "show", "--runs", "--json").out)
    assert [r["metrics"]["metrics.json"]["label_sum"] for r in across] == [54, 45]
    assert "label_sum" in project.hpipe("metrics", "show", "--runs").out

    rows = json.loads(project.hpipe("metrics", "diff", older["id"], newer["id"], "--json").out)
    assert rows == [{"file": "metrics.json", "name": "label_sum", "old": 45, "new": 54, "change": 9}]
    by_data = json.loads(project.hpipe("metrics", "diff", f"data:{first[:8]}", f"data:{second}",
                                       "--json").out)
    assert by_data == rows
    # a run id's shortest unique prefix will do (two runs may start in the same second)
    prefix = next(older["id"][:n] for n in range(15, 21) if not newer["id"].startswith(older["id"][:n]))
    params = json.loads(project.hpipe("params", "diff", prefix, newer["id"], "--json").out)
    assert params == [{"file": "params.yaml", "name": "score.weight", "old": 1, "new": 2, "change": 1}]
    assert "no recorded run read data commit" in user_error(
        project.hpipe("metrics", "diff", "data:abcdef12", check=None))
    assert HangarStore(project.root).branches()["master"] == second


def test_runs_table_hides_noop_runs_and_shows_restores(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.hpipe("repro")  # a no-op
    params = three_stage.read("params.yaml")
    three_stage.write("params.yaml", params.replace("lr: 0.1", "lr: 0.2"))
    three_stage.hpipe("repro")
    three_stage.write("params.yaml", params)
    three_stage.hpipe("repro")  # train restored from the run cache
    newest, _, noop, first = runs(three_stage)
    table = three_stage.hpipe("runs", "--md").out
    assert noop["id"] not in table and first["id"] in table and newest["id"] in table
    assert noop["id"] in three_stage.hpipe("runs", "--md", "--all").out
    assert "train (restored)" in table


def test_a_failed_run_records_no_stale_metrics(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
    three_stage.write("steps.py", "import sys; sys.exit(3)\n")  # train reruns, and fails
    three_stage.hpipe("repro", check=1)
    failed = runs(three_stage)[0]
    assert failed["status"] == 1 and "metrics.json" not in failed["metrics"], \
        "evaluate never ran: its metrics file is the previous run's"


@pytest.fixture
def demo_like(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Runs with the demo's metrics (train and eval files, per-class precision and recall) on two
    data commits, the last restored; hpipe's output piped, with no $COLUMNS."""
    monkeypatch.delitem(ENV, "COLUMNS", raising=False)
    data = Repo(project.root)
    data.write("first", labels=labels(4))
    project.write("params.yaml", "train: {lr: 0.01}\n")
    project.write("steps.py", """
        import json, pathlib, sys, yaml
        lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
        pathlib.Path("metrics").mkdir(exist_ok=True)
        if sys.argv[1] == "train":
            pathlib.Path("model.txt").write_text(str(lr))
            train = {"train_loss": 0.1161234, "val_loss": 0.2562345, "val_accuracy": 0.9 + lr, "epochs": 10}
            json.dump(train, open("metrics/train.json", "w"))
        else:
            per_class = {str(c): 0.9 + c / 1000 for c in range(10)}
            json.dump({"loss": 0.3519123, "accuracy": 0.9012345 + lr, "test_samples": 750, "data_commit": "a=1",
                       "precision": per_class, "recall": per_class,
                       "macro_averaged_f1_score_over_every_class": 0.8}, open("metrics/eval.json", "w"))
    """)
    project.pipeline("""
        data: {repo: ., ref: master}
        stages:
          train:
            cmd: python steps.py train
            params: [train]
            outs: [model.txt]
            metrics: [metrics/train.json]
          evaluate:
            cmd: python steps.py evaluate
            deps: [model.txt]
            metrics: [metrics/eval.json]
    """)
    project.hpipe("repro")
    data.write("relabel", labels={0: np.array([9], dtype=np.int64)})
    project.write("params.yaml", "train: {lr: 0.02}\n")
    project.hpipe("repro")
    project.write("params.yaml", "train: {lr: 0.01}\n")
    project.hpipe("repro")  # both stages restored from the run cache
    return project


def assert_fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    assert "…" not in text
    return lines


def test_runs_and_metrics_tables_fit_80_columns_when_piped(demo_like: Project,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = runs(demo_like)
    lines = assert_fits(demo_like.hpipe("runs").out)
    assert lines[0].split()[:4] == ["run", "data", "commit", "accuracy"] and set(lines[1]) == {"─", " "}
    assert [line[:15] for line in lines[2:5]] == [r["id"][:15] for r in recorded]
    assert recorded[0]["data_commit"][:10] in lines[2] and " 0.9112 " in lines[2]  # the headline metric
    assert "restored" in lines[2]  # `train (restored), evaluate (restored)`, or `2 restored` if that fits
    assert lines[-1].startswith("Left out: ") and "--csv" in lines[-1]

    lines = assert_fits(demo_like.hpipe("metrics", "show", "--runs").out)
    assert lines[0].split()[:6] == ["run", "data", "commit", "accuracy", "val_accuracy", "loss"]
    assert "0.91123" in lines[2] and "0.92123" in lines[3]
    assert re.fullmatch(r"Left out: .* and \d+ more \(see --csv, --md or --json\)", lines[-1])
    wide = demo_like.hpipe("metrics", "show", "--runs", "-n", "1").out
    assert "Left out" in wide and "macro_averaged_f1_score_over_every_class" not in wide
    monkeypatch.setitem(ENV, "COLUMNS", "700")  # a wide terminal shows every column, whole
    wide = demo_like.hpipe("metrics", "show", "--runs").out
    assert "macro_averaged_f1_score_over_every_class" in wide and "recall.9" in wide and "Left out" not in wide


def test_csv_and_markdown_carry_every_column_in_full(demo_like: Project) -> None:
    recorded = runs(demo_like)
    rows = list(csv.DictReader(io.StringIO(demo_like.hpipe("metrics", "show", "--runs", "--csv").out)))
    assert [r["run"] for r in rows] == [r["id"] for r in recorded]
    assert [r["data_commit"] for r in rows] == [r["data_commit"] for r in recorded]  # full digests
    for row, run in zip(rows, recorded):
        numeric = {f"{f}:{k}": v for f, values in run["metrics"].items() for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert len(numeric) == 28 and {k: float(row[k]) for k in numeric} == numeric
    rows = list(csv.DictReader(io.StringIO(demo_like.hpipe("runs", "--csv").out)))
    assert rows[0]["ran"] == "train (restored), evaluate (restored)" and rows[0]["exit"] == "0"
    assert rows[0]["run"] == recorded[0]["id"] and float(rows[0]["metrics/eval.json:accuracy"]) == \
        recorded[0]["metrics"]["metrics/eval.json"]["accuracy"]

    for args in (["runs", "--md"], ["metrics", "show", "--runs", "--md"]):
        header, rule, *body = demo_like.hpipe(*args).out.splitlines()
        assert re.fullmatch(r"\|(-{3,}:?\|)+", rule) and rule.count("|") == header.count("|")
        assert len(body) == 3 and recorded[0]["id"] in body[0] and recorded[0]["data_commit"] in body[0]
    assert "choose one of" in user_error(demo_like.hpipe("runs", "--md", "--csv", check=None))
