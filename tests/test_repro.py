"""End to end: the decision rules of `hpipe repro`, driven through the real command."""

from __future__ import annotations

import json
import os

import yaml
from conftest import Project, user_error


def test_first_run_runs_all_then_noop(three_stage: Project) -> None:
    done = three_stage.hpipe("repro")
    assert three_stage.ran(done) == ["prepare", "train", "evaluate"]
    assert json.loads(three_stage.read("metrics.json")) == {"score": 12}
    again = three_stage.hpipe("repro")
    assert three_stage.ran(again) == []
    assert again.out.strip().endswith("Everything is up to date.")
    status = three_stage.hpipe("status")
    assert status.out.strip() == "Everything is up to date."


def test_lock_records_everything_deterministically(three_stage: Project, tmp_path_factory) -> None:
    three_stage.hpipe("repro")
    lock = yaml.safe_load(three_stage.read("pipeline.lock"))
    assert lock["schema"] == "hpipe/1"
    assert list(lock["stages"]) == ["evaluate", "prepare", "train"]
    prepare = lock["stages"]["prepare"]
    assert prepare["cmd"] == "python steps.py prepare"
    assert prepare["deps"] == [{"path": "raw.txt", "hash": prepare["deps"][0]["hash"], "size": 6}]
    assert len(prepare["deps"][0]["hash"]) == 32  # xxh3-128
    assert prepare["params"] == {"params.yaml": {"prepare.scale": 2}}
    assert prepare["outs"][0]["path"] == "data/clean.txt"
    assert lock["stages"]["train"]["params"] == {
        "params.yaml": {"train": {"lr": 0.1, "epochs": 3, "opt": {"name": "sgd", "momentum": 0.9}}}}
    # the same project elsewhere gives a byte-identical lock
    other = Project(tmp_path_factory.mktemp("copy"))
    for rel in ("raw.txt", "params.yaml", "pipeline.yaml", "steps.py"):
        other.write(rel, three_stage.read(rel))
    other.hpipe("repro")
    assert other.read("pipeline.lock") == three_stage.read("pipeline.lock")


def test_noop_does_not_rewrite_lock(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    before = os.stat(three_stage.root / "pipeline.lock").st_mtime_ns
    three_stage.hpipe("repro")
    assert os.stat(three_stage.root / "pipeline.lock").st_mtime_ns == before
    assert not [p for p in os.listdir(three_stage.root) if p.endswith(".tmp")]


def test_dep_change_reruns_and_downstream_is_rechecked(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("raw.txt", "1\n2\n3\n4\n")
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status["prepare"] == {"changed deps": {"raw.txt": "modified"}}
    assert status["train"] == {"upstream changed": ["prepare"]}
    done = three_stage.hpipe("repro")
    assert three_stage.ran(done) == ["prepare", "train", "evaluate"]
    assert json.loads(three_stage.read("metrics.json")) == {"score": 20}


def test_upstream_rerun_with_same_output_skips_downstream(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("raw.txt", "1\n2\n3\n")  # same content, new mtime
    three_stage.hpipe("repro", "-f", "-s", "prepare")
    done = three_stage.hpipe("repro")
    assert three_stage.ran(done) == []
    # prepare reruns with a new param but writes the same output: train is checked, not rerun
    three_stage.pipeline(three_stage.read("pipeline.yaml").replace("params: [prepare.scale]",
                                                                   "params: [prepare.scale, unrelated]"))
    done = three_stage.hpipe("repro")
    assert three_stage.ran(done) == ["prepare"]
    assert "· train: up to date, skipped" in done.out


def test_param_changes_per_key(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("params.yaml", """
        prepare: {scale: 2}
        train: {lr: 0.2, epochs: 3, opt: {name: sgd}, extra: true}
        unrelated: 2
    """)
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status == {
        "train": {"changed params": {"params.yaml": {
            "train.lr": "modified", "train.opt.momentum": "deleted", "train.extra": "new"}}},
        "evaluate": {"upstream changed": ["train"]},
    }
    text = three_stage.hpipe("status", "-v").out
    assert "train: would run (changed params: params.yaml: train.extra (new), train.lr (modified)" in text
    assert "• train: would run (changed params: train.extra, train.lr, train.opt.momentum)\n" in \
        three_stage.hpipe("status").out, "one line of 80 columns: the keys only"


def test_unrelated_param_does_not_rerun(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("unrelated: 1", "unrelated: 5"))
    assert three_stage.ran(three_stage.hpipe("repro")) == []


def test_definition_changes(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    original = three_stage.read("pipeline.yaml")
    three_stage.pipeline(original.replace("python steps.py evaluate", "python steps.py evaluate --verbose"))
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status == {"evaluate": {"changed definition": {"cmd": "modified"}}}
    three_stage.hpipe("repro")
    # removing a dep counts (DVC misses this, iterative/dvc#9913)
    three_stage.pipeline(three_stage.read("pipeline.yaml").replace("deps: [raw.txt]", "deps: []"))
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status["prepare"] == {"changed deps": {"raw.txt": "removed"}}
    three_stage.hpipe("repro")
    # so does removing a param key or adding an output
    three_stage.pipeline(three_stage.read("pipeline.yaml").replace("params: [train]", "params: []"))
    assert json.loads(three_stage.hpipe("status", "--json").out)["train"] == {
        "changed params": {"params.yaml": {"train": "removed"}}}


def test_missing_or_modified_output_reruns(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    (three_stage.root / "model.txt").unlink()
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status["train"] == {"changed outs": {"model.txt": "deleted"}}
    assert three_stage.ran(three_stage.hpipe("repro", "--no-run-cache")) == ["train"]
    three_stage.write("metrics.json", "{}")
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status == {"evaluate": {"changed outs": {"metrics.json": "modified"}}}
    three_stage.hpipe("repro", "--no-run-cache")
    assert json.loads(three_stage.read("metrics.json")) == {"score": 12}


def test_missing_or_modified_output_is_restored_from_the_cache(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    (three_stage.root / "model.txt").unlink()
    three_stage.write("metrics.json", "{}")
    done = three_stage.hpipe("repro")
    assert three_stage.ran(done) == []
    assert "↺ train: restored from run " in done.out and "↺ evaluate: restored from run " in done.out
    assert three_stage.read("model.txt") == "12" and json.loads(three_stage.read("metrics.json")) == {"score": 12}
    assert three_stage.hpipe("repro").out.strip().endswith("Everything is up to date.")


def test_every_reason_is_collected(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("raw.txt", "5\n")
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("scale: 2", "scale: 3"))
    (three_stage.root / "data/clean.txt").unlink()
    status = json.loads(three_stage.hpipe("status", "--json").out)
    assert status["prepare"] == {
        "changed deps": {"raw.txt": "modified"},
        "changed params": {"params.yaml": {"prepare.scale": "modified"}},
        "changed outs": {"data/clean.txt": "deleted"},
    }
    forced = json.loads(three_stage.hpipe("status", "--json").out)
    assert "forced" not in forced["prepare"]


def test_force_single_item_and_downstream(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    assert three_stage.ran(three_stage.hpipe("repro", "-f")) == ["prepare", "train", "evaluate"]
    assert three_stage.ran(three_stage.hpipe("repro", "-f", "train")) == ["prepare", "train"]
    assert three_stage.ran(three_stage.hpipe("repro", "-f", "-s", "train")) == ["train"]
    done = three_stage.hpipe("repro", "-f", "--downstream", "train")
    assert three_stage.ran(done) == ["train", "evaluate"]
    assert "forced" in done.out


def test_targets_bring_upstream_up_to_date(three_stage: Project) -> None:
    done = three_stage.hpipe("repro", "train")
    assert three_stage.ran(done) == ["prepare", "train"]
    assert not three_stage.exists("metrics.json")
    assert three_stage.ran(three_stage.hpipe("repro")) == ["evaluate"]


def test_dry_run_runs_nothing(three_stage: Project) -> None:
    done = three_stage.hpipe("repro", "--dry-run")
    assert not three_stage.exists("data") and not three_stage.exists("pipeline.lock")
    assert "• prepare: would run (no lock entry)" in done.out
    assert "Would run 3 stage(s): prepare, train, evaluate." in done.out
    three_stage.hpipe("repro")
    three_stage.write("raw.txt", "7\n")
    done = three_stage.hpipe("repro", "-n")
    assert "prepare: would run (changed deps: raw.txt (modified))" in done.out
    assert "train: may run (upstream changed: prepare)" in done.out
    assert ("Would run 1 stage(s): prepare. May run 2 more if their upstream's outputs change:"
            " train, evaluate.") in done.out, "a stage that only may run is not counted as one that will"
    assert three_stage.read("data/clean.txt") == "2\n4\n6\n"


def test_status_quiet_exit_code(three_stage: Project) -> None:
    assert three_stage.hpipe("status", "-q", check=1).out == ""
    three_stage.hpipe("repro")
    assert three_stage.hpipe("status", "-q", check=0).out == ""


def test_always_changed_and_frozen(project: Project) -> None:
    project.pipeline("""
        stages:
          stamp:
            cmd: echo x >> stamps.txt
            outs: [stamps.txt: {persist: true}]
            always_changed: true
          fixed:
            cmd: echo y >> fixed.txt
            outs: [fixed.txt]
    """)
    project.hpipe("repro")
    done = project.hpipe("repro")
    assert project.ran(done) == ["stamp"]
    assert "always changed" in done.out
    assert project.read("stamps.txt") == "x\nx\n"
    project.pipeline(project.read("pipeline.yaml").replace("echo y", "echo z") + "    frozen: true\n")
    done = project.hpipe("repro")
    assert "· fixed: frozen" in done.out
    assert project.read("fixed.txt") == "y\n"


def test_folder_deps_and_outputs(project: Project) -> None:
    project.write("raw/a.txt", "a")
    project.write("raw/sub/b.txt", "b")
    project.pipeline("""
        stages:
          gather:
            cmd: mkdir -p out && cat raw/a.txt raw/sub/*.txt > out/all.txt && cp raw/a.txt out/a.txt
            deps: [raw]
            outs: [out]
          count:
            cmd: wc -c < out/all.txt > count.txt
            deps: [out/all.txt]
            outs: [count.txt]
    """)
    assert project.ran(project.hpipe("repro")) == ["gather", "count"]
    lock = yaml.safe_load(project.read("pipeline.lock"))
    assert lock["stages"]["gather"]["deps"][0]["nfiles"] == 2
    assert lock["stages"]["gather"]["outs"][0]["nfiles"] == 2
    project.write("raw/sub/c.txt", "c")
    status = json.loads(project.hpipe("status", "--json").out)
    assert status["gather"] == {"changed deps": {"raw": "modified"}}
    assert project.ran(project.hpipe("repro")) == ["gather", "count"]
    assert project.read("count.txt").strip() == "3"
    # a dep folder that holds another stage's output depends on that stage
    project.pipeline(project.read("pipeline.yaml") + """
          pack:
            cmd: ls out > listing.txt
            deps: [out]
            outs: [listing.txt]
    """.replace("\n          ", "\n  "))
    dag = project.hpipe("dag").out
    assert "gather" in dag and "pack" in dag
    mermaid = project.hpipe("dag", "--mermaid").out
    assert mermaid.count("-->") == 2


def test_cmd_list_and_multiline_run_in_order_and_stop(project: Project) -> None:
    project.pipeline("""
        stages:
          steps:
            cmd:
              - echo one > log.txt
              - echo two >> log.txt
            outs: [log.txt]
          lines:
            cmd: |
              echo a > lines.txt
              false
              echo never >> lines.txt
            outs: [lines.txt]
    """)
    done = project.hpipe("repro", "-k", check=1)
    assert project.read("log.txt") == "one\ntwo\n"
    assert project.read("lines.txt") == "a\n"
    assert "✗ lines: failed" in done.out and "code 1" in done.out


def test_wdir_paths_are_relative_to_it(project: Project) -> None:
    project.write("sub/in.txt", "hello")
    project.pipeline("""
        stages:
          copy:
            wdir: sub
            cmd: cp in.txt out.txt && pwd > where.txt
            deps: [in.txt]
            outs: [out.txt, where.txt]
    """)
    project.hpipe("repro")
    assert project.read("sub/out.txt") == "hello"
    assert project.read("sub/where.txt").strip().endswith("sub")
    lock = yaml.safe_load(project.read("pipeline.lock"))
    assert lock["stages"]["copy"]["wdir"] == "sub"
    assert lock["stages"]["copy"]["deps"][0]["path"] == "sub/in.txt"


def test_stage_gets_environment(project: Project) -> None:
    project.pipeline("""
        stages:
          env:
            cmd: echo "$HPIPE_STAGE $HPIPE_ROOT" > env.txt
            outs: [env.txt]
    """)
    project.hpipe("repro")
    stage, root = project.read("env.txt").split()
    assert stage == "env" and os.path.samefile(root, project.root)


def test_uses_callable_and_code_dependency(project: Project) -> None:
    project.write("mypkg/__init__.py", "raise RuntimeError('package code must not run in hpipe')\n")
    project.write("mypkg/train.py", """
        import json
        def main(epochs, name="m"):
            json.dump({"epochs": epochs, "name": name}, open("out.json", "w"))
    """)
    project.pipeline("""
        stages:
          train:
            uses: mypkg.train:main
            with: {epochs: 3}
            outs: [out.json]
    """)
    # the package __init__ raises: the stage subprocess hits it, hpipe itself never imports it
    done = project.hpipe("repro", check=1)
    assert "train: failed" in done.out
    project.write("mypkg/__init__.py", "")
    project.hpipe("repro")
    assert json.loads(project.read("out.json")) == {"epochs": 3, "name": "m"}
    lock = yaml.safe_load(project.read("pipeline.lock"))["stages"]["train"]
    assert lock["uses"] == "mypkg.train:main" and lock["with"] == {"epochs": 3}
    assert lock["deps"][0]["code"] == "mypkg.train"
    project.write("mypkg/train.py", project.read("mypkg/train.py").replace('name="m"', 'name="n"'))
    status = json.loads(project.hpipe("status", "--json").out)
    assert status == {"train": {"changed deps": {"code:mypkg.train": "modified"}}}
    project.pipeline(project.read("pipeline.yaml").replace("epochs: 3", "epochs: 4"))
    status = json.loads(project.hpipe("status", "--json").out)
    assert status["train"]["changed definition"] == {"with": {"epochs": "modified"}}
    project.hpipe("repro")
    assert json.loads(project.read("out.json")) == {"epochs": 4, "name": "n"}


def test_outputs_not_produced_fail_the_stage(project: Project) -> None:
    project.pipeline("""
        stages:
          lazy:
            cmd: "true"
            outs: [never.txt]
    """)
    done = project.hpipe("repro", check=1)
    assert "did not produce never.txt" in done.out
    assert not project.exists("pipeline.lock")


def test_removed_stage_leaves_lock(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    text = three_stage.read("pipeline.yaml")
    three_stage.pipeline(text[: text.index("  evaluate:")])
    three_stage.write("raw.txt", "9\n")
    three_stage.hpipe("repro")
    assert set(yaml.safe_load(three_stage.read("pipeline.lock"))["stages"]) == {"prepare", "train"}


def test_repro_json_streams_one_event_per_line(three_stage: Project) -> None:
    three_stage.write("steps.py", "print('stage chatter')\n" + three_stage.read("steps.py"))
    done = three_stage.hpipe("repro", "--json")
    events = [json.loads(line) for line in done.out.splitlines()]  # every stdout line is an event
    assert [e["event"] for e in events] == [
        "run_started", "stage_started", "stage_done", "stage_started", "stage_done",
        "stage_started", "stage_done", "run_done"]
    assert events[0]["stages"] == ["prepare", "train", "evaluate"]
    assert events[1] == {"event": "stage_started", "stage": "prepare", "reasons": {"no lock entry": True}}
    assert events[2]["state"] == "ran" and events[2]["duration"] > 0
    assert events[-1]["ok"] is True and events[-1]["counts"] == {"ran": 3}
    assert done.err.count("stage chatter") == 3, "stage output goes to stderr"
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
    events = [json.loads(line) for line in three_stage.hpipe("repro", "-n", "--json").out.splitlines()]
    assert events[0] == {"event": "run_started", "run_id": None, "stages": ["prepare", "train", "evaluate"]}
    assert [(e["stage"], e["state"]) for e in events[1:-1]] == [
        ("prepare", "skipped"), ("train", "would run"), ("evaluate", "would run")]
    assert events[2]["reasons"] == {"changed params": {"params.yaml": {"train.lr": "modified"}}}
    assert events[-1]["event"] == "run_done" and events[-1]["counts"] == {"skipped": 1, "would run": 2}
    three_stage.write("raw.txt", "oops, not numbers\n")
    done = three_stage.hpipe("repro", "--json", check=1)
    failed = [json.loads(line) for line in done.out.splitlines()][2]
    assert failed["state"] == "failed" and "exited with code 1" in failed["error"]


def test_outputs_are_removed_before_a_stage_runs(project: Project) -> None:
    """A rerun starts from no outputs, as a run from scratch would (DVC's rule)."""
    project.write("params.yaml", "n: 1\n")
    project.pipeline("""
        stages:
          make:
            cmd: python -c "import yaml; n = yaml.safe_load(open('params.yaml'))['n']; import os; os.makedirs('out', exist_ok=True); open(f'out/file_{n}', 'w').write(str(n))"
            params: [n]
            outs: [out]
          note:
            cmd: echo made >> log2.txt
            deps: [out]
            outs: [log2.txt: {cache: false}]
    """)
    project.hpipe("repro")
    project.write("params.yaml", "n: 2\n")
    project.hpipe("repro")
    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["file_2"]
    assert yaml.safe_load(project.read("pipeline.lock"))["stages"]["make"]["outs"][0]["nfiles"] == 1
    assert project.read("log2.txt") == "made\n", "an appended output starts empty each run"


def test_persistent_outputs_are_kept_and_never_restored(project: Project) -> None:
    project.write("params.yaml", "x: a\n")
    project.pipeline("""
        stages:
          grow:
            cmd: python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['x'], file=open('log.txt', 'a'))"
            params: [x]
            outs: [log.txt: {persist: true}]
    """)
    for value in ("a", "b", "a"):
        project.write("params.yaml", f"x: {value}\n")
        assert project.ran(project.hpipe("repro")) == ["grow"]
    assert project.read("log.txt") == "a\nb\na\n", "kept across runs; the A->B->A run was not restored"


def test_an_output_through_a_link_out_of_the_project_is_not_removed(project: Project, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "esc.out").write_text("not yours")
    (project.root / "ldir").symlink_to(outside)
    project.pipeline("""
        stages:
          esc:
            cmd: "true"
            outs: [ldir/esc.out]
    """)
    line = user_error(project.hpipe("repro", check=None))  # refused before anything runs
    assert "stages.esc.outs[0]: output 'ldir/esc.out' is outside the project" in line
    assert (outside / "esc.out").read_text() == "not yours"


def test_commit_records_the_workspace_without_running(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("raw.txt", "1\n2\n3\n\n")  # a change that, say, the user knows is harmless
    assert "prepare: would run" in three_stage.hpipe("status").out
    done = three_stage.hpipe("commit", "prepare")
    assert done.out == "Recorded prepare as the workspace is now.\n"
    assert three_stage.read("data/clean.txt") == "2\n4\n6\n", "nothing ran"
    assert "Everything is up to date." in three_stage.hpipe("status").out
    assert three_stage.hpipe("commit").out == "Nothing to record.\n"
    (three_stage.root / "model.txt").unlink()
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.3"))
    line = user_error(three_stage.hpipe("commit", "train", check=None))
    assert line == "hpipe: error: cannot record stage 'train': output model.txt is missing"


def test_an_output_path_is_a_target(three_stage: Project) -> None:
    done = three_stage.hpipe("repro", "model.txt")  # written by train: train and its upstream
    assert three_stage.ran(done) == ["prepare", "train"]
    assert three_stage.ran(three_stage.hpipe("repro", "-f", "-s", "data/clean.txt")) == ["prepare"]
    assert three_stage.ran(three_stage.hpipe("repro", "-f", "-s", "data")) == ["prepare"]  # a folder holding it
    sub = three_stage.root / "data"
    done = three_stage.hpipe("-C", str(sub), "repro", "-f", "-s", "clean.txt")  # relative to the current folder
    assert three_stage.ran(done) == ["prepare"]
    assert "unknown stage 'nope.txt', nor an output of one" in user_error(
        three_stage.hpipe("repro", "nope.txt", check=None))
