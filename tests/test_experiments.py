"""`hpipe exp run/show/apply/remove` end to end: grids, random and data-commit sweeps, isolation,
restores from the run cache, failures, interruption and kill, apply, remove, show's formats."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import xxhash
from conftest import Project, user_error
from hangar_repo import Repo, labels

from hangar_pipe.hangar.store import HangarStore

TRAIN = """
    import json, os, sys, time
    import yaml
    p = yaml.safe_load(open("params.yaml"))["train"]
    if p["lr"] < 0:
        sys.exit("train.py: a negative learning rate")
    time.sleep(p.get("sleep", 0))
    open("model.txt", "w").write(f"model lr={p['lr']} bs={p['bs']}\\n")
    acc = round(1 - abs(p["lr"] - 0.05) - p["bs"] / 1000, 4)
    json.dump({"acc": acc, "loss": p["lr"], "threads": os.environ.get("HPIPE_THREADS")},
              open("metrics.json", "w"))
"""


@pytest.fixture
def exp(project: Project) -> Project:
    project.write("train.py", TRAIN)
    project.write("params.yaml", "train:\n  lr: 0.1\n  bs: 32\n  sleep: 0\n")
    project.pipeline("""
        stages:
          train:
            cmd: python train.py
            deps: [train.py]
            params: [train]
            outs: [model.txt]
            metrics: [metrics.json]
    """)
    project.hpipe("repro")
    return project


def snapshot(root: Path) -> dict[str, str]:
    """Every file of the project outside .hpipe/, by content."""
    return {str(p.relative_to(root)): xxhash.xxh3_64_hexdigest(p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() and ".hpipe" not in p.parts}


def show(project: Project, *args: str) -> list[dict]:
    return json.loads(project.hpipe("exp", "show", "--json", *args).out)


def test_a_grid_runs_every_point_in_isolation_and_records_it(exp: Project) -> None:
    before = snapshot(exp.root)
    done = exp.hpipe("exp", "run", "-S", "train.lr=0.1,0.01", "-S", "train.bs=32,64", "-j", "2",
                     "--name", "grid")
    assert "4 of 4 points done" in done.out
    assert snapshot(exp.root) == before  # params.yaml, model.txt, metrics.json, the lock: untouched
    points = show(exp)
    assert sorted((p["overrides"]["params.yaml"]["train.lr"], p["overrides"]["params.yaml"]["train.bs"])
                  for p in points) == [(0.01, 32), (0.01, 64), (0.1, 32), (0.1, 64)]
    assert {p["state"] for p in points} == {"done"}
    by = {(p["overrides"]["params.yaml"]["train.lr"], p["overrides"]["params.yaml"]["train.bs"]): p
          for p in points}
    assert by[(0.01, 64)]["metrics"]["metrics.json"]["acc"] == 0.896
    assert by[(0.1, 32)]["stages"] == {"train": "restored"}  # the workspace's own result, from the cache
    cores = len(os.sched_getaffinity(0))
    assert {p["metrics"]["metrics.json"]["threads"] for p in points if p["stages"]["train"] == "ran"} == {
        str(max(1, cores // 2))}  # -j 2: each point on its share of the cores
    exp.hpipe("exp", "run", "-S", "train.lr=0.3", "--name", "one")
    assert show(exp, "--name", "one")[0]["metrics"]["metrics.json"]["threads"] == str(cores)
    runs = json.loads(exp.hpipe("runs", "--json").out)
    tagged = [r for r in runs if r["tags"].get("experiment") == "grid"]
    assert sorted(r["tags"]["point"] for r in tagged) == sorted(p["id"] for p in points)
    assert not (exp.root / ".hpipe/exps/grid/ws").exists() or not any((exp.root / ".hpipe/exps/grid/ws").iterdir())


def test_a_rerun_runs_nothing_and_a_new_name_restores_every_point(exp: Project) -> None:
    grid = ["exp", "run", "-S", "train.lr=0.2,0.3", "-S", "train.bs=8,16"]
    first = exp.hpipe(*grid)
    again = exp.hpipe(*grid)
    assert again.out.count("done before") == 4 and "→" not in again.out
    other = exp.hpipe(*grid, "--name", "other")
    assert other.out.count("(1 restored)") == 4, other.out
    assert first.out.splitlines()[0].startswith("Experiment exp-")


def test_random_points_are_seeded_and_ranges_need_random(exp: Project) -> None:
    args = ["exp", "run", "-S", "train.lr=range(0.001,0.1,log)", "-S", "train.bs=randint(8,64)",
            "--random", "3", "--seed", "7"]
    exp.hpipe(*args, "--name", "a")
    exp.hpipe(*args, "--name", "b")
    a, b = show(exp, "--name", "a"), show(exp, "--name", "b")
    assert [p["overrides"] for p in a] == [p["overrides"] for p in b] and len(a) == 3
    for p in a:
        values = p["overrides"]["params.yaml"]
        assert 0.001 <= values["train.lr"] <= 0.1 and 8 <= values["train.bs"] <= 64
        assert isinstance(values["train.bs"], int)
    line = user_error(exp.hpipe("exp", "run", "-S", "train.lr=range(0.001,0.1)", check=None))
    assert line == "hpipe: error: -S train.lr: a range is sampled; add --random K (and --seed S)"


def test_a_failed_point_is_recorded_and_the_others_run(exp: Project) -> None:
    done = exp.hpipe("exp", "run", "-S", "train.lr=-1,0.02", "--name", "f", check=1)
    assert "1 of 2 points done, 1 failed" in done.out
    failed = [p for p in show(exp) if p["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["overrides"]["params.yaml"]["train.lr"] == -1
    assert "exit" in failed[0]["error"] or "failed" in failed[0]["error"]
    assert "a negative learning rate" in Path(failed[0]["log"]).read_text()
    fast = exp.hpipe("exp", "run", "-S", "train.lr=-1,0.03,0.04", "--name", "ff", "--fail-fast", check=1)
    assert len(show(exp, "--name", "ff")) == 1, fast.out
    started = time.monotonic()  # -j 2: the point running beside the failed one is interrupted
    exp.hpipe("exp", "run", "-S", "train.lr=-1,0.05", "-S", "train.sleep=20", "-j", "2", "--name", "ff2",
              "--fail-fast", check=1)
    assert time.monotonic() - started < 15
    assert [p["state"] for p in show(exp, "--name", "ff2")] == ["failed"]


def test_apply_writes_the_params_and_restores_the_outputs(exp: Project) -> None:
    exp.hpipe("exp", "run", "-S", "train.lr=0.01,0.02", "-S", "train.bs=64")
    point = next(p for p in show(exp) if p["overrides"]["params.yaml"]["train.lr"] == 0.01)
    done = exp.hpipe("exp", "apply", point["id"][:5])
    assert "restored" in done.out and "ran" not in done.out.split("Applied")[0]
    assert "lr: 0.01" in exp.read("params.yaml") and "bs: 64" in exp.read("params.yaml")
    assert exp.read("model.txt") == "model lr=0.01 bs=64\n"
    assert json.loads(exp.read("metrics.json"))["acc"] == point["metrics"]["metrics.json"]["acc"]
    assert exp.ran(exp.hpipe("repro")) == []
    assert exp.hpipe("status").out.strip() == "Everything is up to date."


def test_show_formats_sorting_and_remove(exp: Project) -> None:
    exp.hpipe("exp", "run", "-S", "train.lr=0.1,0.01,0.05", "-S", "train.bs=32", "--name", "s")
    md = exp.hpipe("exp", "show", "--md", "--only-changed", "--sort-by", "acc", "--sort-order", "desc").out
    header, _, *rows = md.strip().splitlines()
    assert "train.lr" in header and "train.bs" not in header  # the same everywhere: left out
    assert [r.split("|")[3].strip() for r in rows] == ["0.05", "0.01", "0.1"]
    table = list(csv.DictReader(io.StringIO(exp.hpipe("exp", "show", "--csv").out)))
    assert [row["metrics.json:acc"] for row in table] == ["0.918", "0.928", "0.968"]
    assert "0.968" in exp.hpipe("exp", "show").out
    assert "no metric 'acx' (did you mean 'acc'?)" in user_error(
        exp.hpipe("exp", "show", "--sort-by", "acx", check=None))
    first = table[0]["point"]
    assert "Removed 1 point" in exp.hpipe("exp", "remove", first[:6]).out
    assert first not in exp.hpipe("exp", "show", "--csv").out
    assert "Removed 2 points (experiment s)" in exp.hpipe("exp", "remove", "--name", "s").out
    assert "No experiment points yet" in exp.hpipe("exp", "show").out


@pytest.mark.parametrize(("args", "message"), [
    (["-S", "train.lrr=0.1"], "-S train.lrr: params.yaml has no key 'lrr' under train (did you mean 'lr'?)"),
    (["-S", "train.lr"], "-S 'train.lr': expected [FILE:]KEY=VALUE[,VALUE...] such as train.lr=0.1,0.01"),
    (["-S", "train.lr=1", "-S", "train.lr=2"], "-S train.lr is given twice (give its values as one comma list)"),
    (["-S", "other.toml:a=1"], "-S other.toml: can set keys of YAML and JSON params files only (this is TOML)"),
    (["nosuch"], "unknown stage 'nosuch', nor an output of one; stages: train"),
    (["--name", "a/b"], "--name 'a/b': use letters, digits and - _ . (no slashes)"),
])
def test_bad_experiments_are_one_line_errors(exp: Project, args: list[str], message: str) -> None:
    exp.write("other.toml", "a = 1\n")
    line = user_error(exp.hpipe("exp", "run", *args, check=None))
    assert line == f"hpipe: error: {message}"
    assert not (exp.root / ".hpipe/exps").exists()  # refused before anything was made


def _wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_or_killed_run_loses_no_finished_point(exp: Project, how: signal.Signals) -> None:
    exp.write("params.yaml", "train:\n  lr: 0.1\n  bs: 32\n  sleep: 1\n")
    args = ["exp", "run", "-S", "train.lr=0.11,0.12,0.13,0.14", "--name", "k"]
    proc = exp.popen(*args)
    points = exp.root / ".hpipe/exps/k/points"
    _wait_for(lambda: points.is_dir() and len(list(points.glob("*.json"))) >= 1)
    proc.send_signal(how)
    proc.wait(timeout=60)
    assert proc.returncode in (130, -9)
    first = {p.name: p.read_text() for p in points.glob("*.json")}
    assert 1 <= len(first) < 4
    _wait_for(lambda: not _points_running(exp.root), 30)  # (killed: each point stops on its own)
    again = exp.hpipe(*args)
    assert again.out.count("done before") == len(first)
    assert again.out.count("→") == 4 - len(first)
    assert {p.name: p.read_text() for p in points.glob("*.json") if p.name in first} == first
    assert len(show(exp, "--name", "k")) == 4


def _points_running(root: Path) -> list[int]:
    """Processes working inside the experiments' folder (a point not stopped yet)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(root / ".hpipe/exps"):
            found.append(int(pid))
    return found


@pytest.fixture
def data(project: Project) -> Repo:
    repo = Repo(project.root)
    repo.write("first", labels=labels(10))
    return repo


def test_data_commits_are_an_axis(project: Project, data: Repo) -> None:
    project.write("train.py", """
        import json, yaml
        from hangar_pipe.data import open_columns
        scale = yaml.safe_load(open("params.yaml"))["scale"]
        with open_columns(["labels"]) as cols:
            col = cols["labels"]
            total = int(sum(int(col[k][0]) for k in col.keys()))
        json.dump({"score": total * scale}, open("metrics.json", "w"))
    """)
    project.write("params.yaml", "scale: 1\n")
    project.pipeline("""
        stages:
          train:
            cmd: python train.py
            deps: [train.py, {hangar: [labels]}]
            params: [scale]
            metrics: [metrics.json]
    """)
    first = HangarStore(project.root).branches()["master"]
    project.hpipe("repro")
    second = data.write("relabel", labels={i: np.array([9], dtype=np.int64) for i in range(10)})
    before = snapshot(project.root)
    project.hpipe("exp", "run", "-S", "scale=1,2", "--data-commit", f"{first},master", "--name", "d")
    assert snapshot(project.root) == before
    got = {(p["data_commit"], p["overrides"]["params.yaml"]["scale"]): p["metrics"]["metrics.json"]["score"]
           for p in show(project)}
    assert got == {(first, 1): 45, (first, 2): 90, (second, 1): 90, (second, 2): 180}
    assert HangarStore(project.root).branches()["master"] == second  # the data: untouched
    pinned = next(p for p in show(project) if p["data_commit"] == first and
                  p["overrides"]["params.yaml"]["scale"] == 2)
    done = project.hpipe("exp", "apply", pinned["id"])
    assert f"hpipe repro --data-commit {first}" in done.out
    assert json.loads(project.read("metrics.json"))["score"] == 90


def test_names_cannot_leave_the_experiments_folder(exp: Project) -> None:
    for bad in ("..", "../..", "/tmp", ""):
        line = user_error(exp.hpipe("exp", "remove", "--name", bad, check=None))
        assert "use letters, digits and - _ ." in line
    assert (exp.root / ".hpipe/runs.db").exists() and exp.exists("params.yaml")


def test_a_changed_project_reruns_points_done_before(exp: Project) -> None:
    grid = ["exp", "run", "-S", "train.lr=0.2,0.3", "--name", "c"]
    exp.hpipe(*grid)
    exp.write("train.py", TRAIN.replace("round(1 -", "round(2 -"))  # the code changed: results differ
    again = exp.hpipe(*grid)
    assert "done before" not in again.out and again.out.count("(1 ran)") == 2
    assert {p["metrics"]["metrics.json"]["acc"] > 1 for p in show(exp)} == {True}


def test_gc_waits_for_a_running_experiment(exp: Project) -> None:
    import fcntl

    lock = exp.root / ".hpipe/exps/busy/run.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        line = user_error(exp.hpipe("gc", check=None))
    assert line == "hpipe: error: experiment 'busy' is running (hpipe exp run); run gc when it has finished"
    exp.hpipe("gc")


def test_points_never_write_hangar_data(project: Project) -> None:
    Repo(project.root)  # a repository with no commit yet: nothing to pin the points to
    project.write("params.yaml", "n: 1\n")
    project.write("ingest.py", "print('would commit')\n")
    project.pipeline("""
        stages:
          ingest:
            cmd: python ingest.py
            params: [n]
            outs: [{hangar: [col]}]
    """)
    line = user_error(project.hpipe("exp", "run", "-S", "n=1,2", check=None))
    assert "no data commit to run the points at yet (stage 'ingest' writes Hangar data" in line
