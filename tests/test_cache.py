"""The output cache and run cache: restore instead of rerun, integrity, what is never restored."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ENV, Project
from hangar_repo import Repo, images, labels

from hangar_pipe.hangar.store import HangarStore


def set_lr(project: Project, lr: str) -> None:
    text = project.read("params.yaml")
    for old in ("lr: 0.1", "lr: 0.2", "lr: 0.3"):
        text = text.replace(old, f"lr: {lr}")
    project.write("params.yaml", text)


def run_ids(project: Project) -> list[str]:
    return [r["id"] for r in json.loads(project.hpipe("runs", "--json").out)]


def counting_stage(project: Project) -> None:
    """A stage whose output depends on params.yaml's train.lr, counting its real runs."""
    project.write("params.yaml", "train: {lr: 0.1}\n")
    project.write("fit.py", """
        import pathlib, yaml
        lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
        pathlib.Path("out").mkdir(exist_ok=True)
        open("out/model.txt", "w").write(f"model lr={lr}")
        open("out/sub.txt", "w").write("nested")
        with open("runs.log", "a") as fh:
            fh.write(f"{lr}\\n")
    """)
    project.pipeline("""
        stages:
          fit:
            cmd: python fit.py
            deps: [fit.py]
            params: [train.lr]
            outs: [out]
    """)


def test_a_b_a_restores_instead_of_rerunning(project: Project) -> None:
    counting_stage(project)
    project.hpipe("repro")
    first_run = run_ids(project)[0]
    set_lr(project, "0.2")
    project.hpipe("repro")
    assert project.read("out/model.txt") == "model lr=0.2"
    set_lr(project, "0.1")
    done = project.hpipe("repro")
    assert f"↺ fit: restored from run {first_run}" in done.out
    assert "1 restored" in done.out
    assert project.read("out/model.txt") == "model lr=0.1" and project.read("out/sub.txt") == "nested"
    assert project.read("runs.log").split() == ["0.1", "0.2"], "the stage did not run a third time"
    assert project.hpipe("status").out.strip() == "Everything is up to date."
    newest = json.loads(project.hpipe("runs", "--json").out)[0]
    assert newest["stages"][0]["state"] == "restored" and newest["stages"][0]["restored_from"] == first_run


def test_no_run_cache_runs_anyway(project: Project) -> None:
    counting_stage(project)
    project.hpipe("repro")
    set_lr(project, "0.2")
    project.hpipe("repro")
    set_lr(project, "0.1")
    assert project.ran(project.hpipe("repro", "--no-run-cache")) == ["fit"]
    assert project.read("runs.log").split() == ["0.1", "0.2", "0.1"]


def test_restore_after_the_workspace_files_were_deleted(project: Project) -> None:
    counting_stage(project)
    project.hpipe("repro")
    import shutil

    shutil.rmtree(project.root / "out")
    done = project.hpipe("repro")
    assert "↺ fit: restored from run" in done.out
    assert project.read("out/model.txt") == "model lr=0.1"
    assert project.read("runs.log").split() == ["0.1"]


def test_corrupted_cache_object_is_detected_and_replaced(project: Project) -> None:
    counting_stage(project)
    project.hpipe("repro")
    objects = project.root / ".hpipe/cache/objects"
    model = next(p for p in objects.rglob("*") if p.is_file() and p.read_bytes() == b"model lr=0.1")
    model.chmod(0o644)
    model.write_bytes(b"model lr=9.9")  # bit rot
    set_lr(project, "0.2")
    project.hpipe("repro")
    set_lr(project, "0.1")
    done = project.hpipe("repro")
    assert "is corrupted; removed, the stage runs" in done.err
    assert project.ran(done) == ["fit"] and project.read("out/model.txt") == "model lr=0.1"
    set_lr(project, "0.2")
    project.hpipe("repro")
    set_lr(project, "0.1")
    assert "↺ fit: restored" in project.hpipe("repro").out, "the rerun put a good object back"


def test_editing_a_workspace_output_does_not_touch_the_cache(project: Project) -> None:
    counting_stage(project)
    project.hpipe("repro")
    with open(project.root / "out/model.txt", "a") as fh:  # edit in place
        fh.write(" tampered")
    objects = [p.read_bytes() for p in (project.root / ".hpipe/cache/objects").rglob("*") if p.is_file()]
    assert b"model lr=0.1" in objects and not any(b"tampered" in o for o in objects)
    assert "↺ fit: restored" in project.hpipe("repro").out
    assert project.read("out/model.txt") == "model lr=0.1"


def test_what_is_never_restored(project: Project) -> None:
    project.write("params.yaml", "p: 1\n")
    project.pipeline("""
        stages:
          uncached:
            cmd: echo $RANDOM > u.txt
            params: [p]
            outs: [{u.txt: {cache: false}}]
          always:
            cmd: echo $RANDOM > a.txt
            params: [p]
            outs: [a.txt]
            always_changed: true
          nodeps:
            cmd: echo $RANDOM > n.txt
            outs: [n.txt]
    """)
    project.hpipe("repro")
    for name in ("u.txt", "a.txt", "n.txt"):
        (project.root / name).unlink()
    project.write("params.yaml", "p: 2\n")
    project.hpipe("repro")
    for name in ("u.txt", "a.txt", "n.txt"):
        (project.root / name).unlink()
    project.write("params.yaml", "p: 1\n")
    done = project.hpipe("repro")
    assert "restored" not in done.out
    assert sorted(project.ran(done)) == ["always", "nodeps", "uncached"]
    lock = project.read("pipeline.lock")
    assert "u.txt" in lock, "an uncached out is still hashed into the lock"


def test_verify_passes_on_a_deterministic_pipeline(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    done = three_stage.hpipe("repro", "--verify")
    assert three_stage.ran(done) == ["prepare", "train", "evaluate"]
    assert "verify evaluate: reproduced exactly" in done.out and "verify train: reproduced exactly" in done.out


def test_verify_fails_on_a_nondeterministic_stage(project: Project) -> None:
    project.write("params.yaml", "p: 1\n")
    project.write("noisy.py", "import json, random\njson.dump({'acc': random.random()}, open('m.json', 'w'))\n")
    project.pipeline("""
        stages:
          noisy:
            cmd: python noisy.py
            params: [p]
            metrics: [m.json]
    """)
    project.hpipe("repro")
    done = project.hpipe("repro", "--verify", check=1)
    assert "verify noisy: NOT reproduced: m.json:acc 0." in done.out


def test_gc_keeps_what_is_referenced(project: Project) -> None:
    counting_stage(project)
    for lr in ("0.1", "0.2", "0.3"):
        set_lr(project, lr)
        project.hpipe("repro")
    dry = project.hpipe("gc", "--keep-runs", "1", "--dry-run").out
    # lr 0.1 and 0.2: their model.txt and folder manifests (sub.txt is shared and kept)
    assert dry.startswith("Would remove 4 cache objects") and "2 run-cache entries" in dry
    set_lr(project, "0.1")
    assert "↺ fit: restored" in project.hpipe("repro").out, "a dry run removed nothing"
    set_lr(project, "0.3")
    assert "↺ fit: restored" in project.hpipe("repro").out
    assert project.hpipe("gc", "--keep-runs", "1").out.startswith("Removed")
    assert "↺ fit: restored" not in project.hpipe("status").out
    assert project.read("out/model.txt") == "model lr=0.3"  # the workspace is untouched
    set_lr(project, "0.2")
    assert project.ran(project.hpipe("repro")) == ["fit"], "0.2's result was collected"
    set_lr(project, "0.3")
    assert "↺ fit: restored" in project.hpipe("repro").out, "the kept run is still restorable"


LOADER = """
    stages:
      fit:
        cmd: python load.py
        deps:
          - hangar: [imgs, labels]
        outs: [n.txt]
"""


def cached_columns(project: Project) -> set[str]:
    return {p.name[:-4] for p in (project.root / ".hpipe" / "columns").glob("*.npy")}


def fingerprints(project: Project, commit: str, *columns: str) -> set[str]:
    store = HangarStore(project.root)
    return {store.column(commit, c).fingerprint for c in columns}


def test_gc_cleans_the_column_cache(project: Project) -> None:
    data = Repo(project.root)
    v1 = data.write("v1", imgs=images(20), labels=labels(20))
    project.write("load.py", """
        import pathlib, sys
        from hangar_pipe.torch import ColumnsDataset
        ds = ColumnsDataset(["imgs", "labels"])
        pathlib.Path("n.txt").write_text(str(len(ds)))
        sys.exit(pathlib.Path("fail").exists())
    """)
    project.pipeline(LOADER)
    project.hpipe("repro")
    v2 = data.write("new images", imgs=images(20, seed=1))
    project.hpipe("repro")
    old, kept = fingerprints(project, v1, "imgs"), fingerprints(project, v2, "imgs", "labels")
    assert cached_columns(project) == old | kept
    dry = project.hpipe("gc", "--dry-run").out
    assert dry.startswith("Would remove 0 cache objects (0.0 MB), 1 cached columns (0.0 MB) and"), dry
    assert cached_columns(project) == old | kept, "a dry run removes nothing"
    # new data a failed run read (pipeline.lock still records v2) is what the next run reads: kept
    v3 = data.write("newer images", imgs=images(20, seed=2))
    project.write("fail", "")
    project.hpipe("repro", check=1)
    read_now = fingerprints(project, v3, "imgs")
    assert cached_columns(project) == old | kept | read_now
    code = ("import sys, runpy; sys.argv = ['hpipe', 'gc'];\n"
            "try: runpy.run_module('hangar_pipe.cli', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                         text=True, check=True, env=ENV).stdout
    assert out.splitlines() == ["Removed 0 cache objects (0.0 MB), 1 cached columns (0.0 MB) and"
                                " 0 run-cache entries.", "False"], "gc needs no torch"
    assert cached_columns(project) == kept | read_now
    assert project.hpipe("gc").out.startswith("Removed 0 cache objects (0.0 MB), 0 cached columns")


def test_lock_entry_restores_deleted_outputs_without_a_run_cache(three_stage: Project) -> None:
    """A fresh clone has pipeline.lock and (pulled) objects but no run cache: the lock's own record,
    made from the same inputs, puts a deleted output back instead of running the stage."""
    three_stage.hpipe("repro")
    (three_stage.root / ".hpipe/cache/run-cache.db").unlink()
    (three_stage.root / "model.txt").unlink()
    done = three_stage.hpipe("repro")
    assert "↺ train: restored from pipeline.lock's record" in done.out, done.out
    assert three_stage.read("model.txt") == "12"
    assert three_stage.ran(done) == []
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
    (three_stage.root / "model.txt").unlink()  # other inputs: the lock's record is not used
    assert "train" in three_stage.ran(three_stage.hpipe("repro"))


def test_the_lock_record_of_another_command_is_not_restored(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    (three_stage.root / ".hpipe/cache/run-cache.db").unlink()
    three_stage.pipeline(three_stage.read("pipeline.yaml").replace(
        "cmd: python steps.py train", "cmd: python steps.py train && echo again"))
    assert "train" in three_stage.ran(three_stage.hpipe("repro"))
