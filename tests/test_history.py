"""Run history: every `hpipe repro` is recorded; runs, metrics across runs, diffs between runs."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
from conftest import Project, user_error
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
    table = three_stage.hpipe("runs").out
    assert first["id"] in table and "prepare, train, evaluate" in table and "score 12" in table


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
    params = json.loads(project.hpipe("params", "diff", older["id"][:15], newer["id"], "--json").out)
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
