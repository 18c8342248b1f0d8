"""Hangar data as dependencies, on real repositories built with Hangar's own API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from conftest import ENV, Project, user_error
from hangar_repo import READER, Repo, images, labels

from hangar_pipe.hangar.store import HangarStore


@pytest.fixture
def data(project: Project) -> Repo:
    repo = Repo(project.root)
    repo.write("first", imgs=images(20), labels=labels(20), other=labels(5))
    return repo


def status(project: Project, *args: str) -> dict:
    return json.loads(project.hpipe("status", "--json", *args).out)


def lock_dep(project: Project, stage: str = "train") -> dict:
    """The stage's (first) Hangar dep record in pipeline.lock."""
    deps = yaml.safe_load(project.read("pipeline.lock"))["stages"][stage]["deps"]
    return next(d for d in deps if "hangar" in d)


def test_lock_records_repo_ref_commit_and_columns(project: Project, data: Repo) -> None:
    project.pipeline(READER)
    project.hpipe("repro")
    dep = lock_dep(project)
    head = HangarStore(project.root).branches()["master"]
    assert dep["hangar"] == "." and dep["ref"] == "master" and dep["commit"] == head
    assert set(dep["columns"]) == {"imgs", "labels"}
    assert dep["columns"]["labels"]["samples"] == 20
    assert len(dep["columns"]["imgs"]["fingerprint"]) == 32
    assert project.read("model.txt").strip() == head


def test_commit_touching_only_another_column_reruns_nothing(project: Project, data: Repo) -> None:
    project.pipeline(READER)
    project.hpipe("repro")
    data.write("only other", other={0: np.array([99], dtype=np.int64)})
    data.write("new column", extra=labels(3))
    assert status(project) == {}
    assert project.ran(project.hpipe("repro")) == []


def test_changing_one_sample_reruns_and_is_explained(project: Project, data: Repo) -> None:
    project.pipeline(READER)
    project.hpipe("repro")
    old = lock_dep(project)["commit"]
    new = data.write("relabel", labels={3: np.array([7], dtype=np.int64)})
    reason = status(project)["train"]["changed deps"]["hangar:."]
    assert reason == {"labels": {"from": old, "to": new, "modified": 1}}, "data: full digests, counts"
    assert project.hpipe("status").out == "• train: would run (changed deps: column labels (1 modified))\n"
    assert (f"train: would run (changed deps: hangar column labels (1 sample modified) changed between"
            f" {old[:10]} and {new[:10]})") in project.hpipe("status", "-v").out
    data.write("grow", labels={20: np.array([1], dtype=np.int64), 21: np.array([2], dtype=np.int64)})
    assert status(project)["train"]["changed deps"]["hangar:."]["labels"]["added"] == 2
    assert project.ran(project.hpipe("repro")) == ["train"]
    assert lock_dep(project)["commit"] == HangarStore(project.root).branches()["master"]


def test_schema_change_reruns(project: Project, data: Repo) -> None:
    project.pipeline(READER)
    project.hpipe("repro")

    def widen(co):
        del co.columns["imgs"]
        col = co.add_ndarray_column("imgs", shape=(16,), dtype=np.float64)
        with col:
            for key, value in images(20).items():
                col[key] = value.astype(np.float64)

    data.edit("float64 images", widen)
    reason = status(project)["train"]["changed deps"]["hangar:."]["imgs"]
    assert reason["schema"] == {"dtype": ["float32", "float64"]}
    assert "imgs (20 samples modified, schema dtype float32 -> float64) changed" in project.hpipe("status", "-v").out
    assert project.ran(project.hpipe("repro")) == ["train"]


def test_backend_change_does_not_rerun(project: Project, data: Repo) -> None:
    project.pipeline(READER)
    project.hpipe("repro")
    before = HangarStore(project.root).branches()["master"]

    def move(co):
        co.columns["imgs"].change_backend("01")

    after = data.edit("move images to backend 01", move)
    assert after != before
    assert status(project) == {}
    assert project.ran(project.hpipe("repro")) == []


def test_data_commit_reproduces_an_older_commits_results(project: Project, data: Repo) -> None:
    project.write("train.py", """
        import json
        from hangar_pipe.data import open_columns
        with open_columns(["labels"]) as cols:
            col = cols["labels"]
            total = int(sum(int(col[k][0]) for k in col.keys()))
        json.dump({"label_sum": total}, open("metrics.json", "w"))
    """)
    project.pipeline("""
        stages:
          train:
            cmd: python train.py
            deps: [train.py, {hangar: [labels]}]
            metrics: [metrics.json]
    """)
    first_commit = HangarStore(project.root).branches()["master"]
    project.hpipe("repro")
    first = project.read("metrics.json")
    data.write("relabel", labels={i: np.array([9], dtype=np.int64) for i in range(5)})
    project.hpipe("repro")
    assert project.read("metrics.json") != first
    assert status(project, "--data-commit", first_commit)["train"]["changed deps"]
    done = project.hpipe("repro", "--data-commit", first_commit, "--no-run-cache")
    assert project.ran(done) == ["train"]
    assert project.read("metrics.json") == first
    assert lock_dep(project)["commit"] == first_commit
    assert status(project, "--data-commit", first_commit[:8]) == {}
    assert "train" in status(project)  # the branch head differs from what was last recorded


def test_refs_branches_short_digests_and_bad_refs(project: Project, data: Repo) -> None:
    data.branch("dev")
    dev_commit = data.write("dev labels", branch="dev", labels={0: np.array([5], dtype=np.int64)})
    project.pipeline("""
        data: {ref: dev}
        stages:
          train:
            cmd: echo "$HPIPE_DATA_REF $HPIPE_DATA_COMMIT" > model.txt
            deps: [{hangar: [labels]}]
            outs: [model.txt]
          compare:
            cmd: echo master > compare.txt
            deps: [{hangar: {repo: ., ref: master, columns: [labels]}}]
            outs: [compare.txt]
    """)
    project.hpipe("repro")
    assert project.read("model.txt").split() == ["dev", dev_commit]
    deps = yaml.safe_load(project.read("pipeline.lock"))["stages"]["compare"]["deps"][0]
    assert deps["hangar"] == ".@master" and deps["ref"] == "master"
    short = dev_commit[2:10]
    assert status(project, "--data-commit", short).keys() == {"compare"}  # master's deps pinned too
    line = user_error(project.hpipe("status", "--data-commit", "nope", check=None))
    assert "unknown ref 'nope'" in line and "branches: dev, master" in line
    assert "recent commits: " in line and "'dev labels'" in line
    project.pipeline(project.read("pipeline.yaml").replace("data: {ref: dev}", "data: {ref: gone}"))
    line = user_error(project.hpipe("status", check=None))
    assert "pipeline.yaml:5: stages.train.deps[0]: unknown ref 'gone' in the Hangar repository" in line
    assert "branches: dev, master" in line


def test_missing_column_is_reported(project: Project, data: Repo) -> None:
    project.pipeline(READER.replace("[imgs, labels]", "[imgs, labelz]"))
    line = user_error(project.hpipe("repro", check=None))
    assert "stages.train.deps[0]: hangar column 'labelz' not found in . at master" in line
    assert "columns there: imgs, labels, other" in line


WRITER_AND_READER = """
    data: {ref: DATA_REF}
    stages:
      make:
        cmd: "true"
        outs: [{hangar: [imgs]}]
      train:
        cmd: echo "$HPIPE_DATA_COMMIT" > model.txt
        deps: [{hangar: [READS]}]
        outs: [model.txt]
"""


def test_a_misspelt_column_is_an_error_even_beside_a_written_one(project: Project, data: Repo) -> None:
    """Only the columns an upstream stage writes may be missing before it runs."""
    project.pipeline(WRITER_AND_READER.replace("DATA_REF", "master").replace("READS", "imgs, labls"))
    line = user_error(project.hpipe("status", check=None))
    assert "stages.train.deps[0]: hangar column 'labls' not found in . at master" in line
    assert "columns there: imgs, labels, other" in line
    project.pipeline(project.read("pipeline.yaml").replace("labls", "labels"))
    assert "train: would run" in project.hpipe("status").out


def test_a_misspelt_data_ref_is_an_error_not_a_new_branch(project: Project, data: Repo) -> None:
    writer = WRITER_AND_READER.replace("DATA_REF", "mastr").replace("READS", "imgs")
    project.pipeline(writer)
    for command in ("status", "repro"):
        line = user_error(project.hpipe(command, check=None))
        assert "stages.make.outs[0]: this stage writes branch 'mastr' (data.ref) of ., which does not exist;" \
               " branches: master." in line
    assert sorted(HangarStore(project.root).branches()) == ["master"], "no branch was created"
    project.pipeline(writer.replace("[{hangar: [imgs]}]", "[{hangar: {columns: [imgs], ref: mastr}}]"))
    assert "make: would run" in project.hpipe("status").out  # named in the out: it creates it
    project.pipeline(READER.replace("    stages:", "    data: {ref: mastr}\n    stages:"))  # a reader only
    assert "unknown ref 'mastr'" in user_error(project.hpipe("status", check=None))


def test_repository_with_branches_merges_and_foreign_columns(project: Project) -> None:
    repo = Repo(project.root)
    repo.write("base", imgs=images(10), labels=labels(10))
    repo.branch("feature")
    repo.write("feature work", branch="feature", notes=labels(4), imgs={10: images(11)[10]})
    repo.write("master work", labels={0: np.array([3], dtype=np.int64)}, misc=labels(2))
    merged = repo.merge("merge feature", into="master", other="feature")
    project.pipeline(READER)
    project.hpipe("repro")
    dep = lock_dep(project)
    assert dep["commit"] == merged
    assert dep["columns"]["imgs"]["samples"] == 11 and dep["columns"]["labels"]["samples"] == 10
    store = HangarStore(project.root)
    assert store.column_names(merged) == ["imgs", "labels", "misc", "notes"]
    assert len(store.parents(merged)) == 2


def test_stage_environment_and_no_heavy_imports(project: Project, data: Repo) -> None:
    project.pipeline(READER)
    project.hpipe("repro")
    code = textwrap.dedent("""
        import sys, runpy
        sys.argv = ['hpipe', 'status']
        try:
            runpy.run_module('hangar_pipe.cli', run_name='__main__')
        except SystemExit:
            pass
        print(sorted(m for m in ('torch', 'hangar', 'numpy', 'blosc') if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                         text=True, check=True, env=ENV).stdout
    assert out.strip().splitlines() == ["Everything is up to date.", "[]"]


def test_readers_see_the_commit_resolved_at_the_start(project: Project, data: Repo) -> None:
    """A commit landing mid-run (not from an upstream writer stage) is not seen until the next run."""
    start = HangarStore(project.root).branches()["master"]
    project.write("commit_now.py", """
        import numpy as np
        from hangar_pipe.hangar import compat
        hangar = compat.import_hangar()
        with compat.quiet():
            co = hangar.Repository(".", exists=True).checkout(write=True)
        co.columns["labels"][0] = np.array([8], dtype=np.int64)
        co.commit("mid-run")
        co.close()
        open("first.txt", "w").write("done")
    """)
    project.pipeline("""
        stages:
          first:
            cmd: python commit_now.py
            deps: [{hangar: [labels]}]
            outs: [first.txt]
          second:
            cmd: echo "$HPIPE_DATA_COMMIT" > second.txt
            deps: [first.txt, {hangar: [labels]}]
            outs: [second.txt]
    """)
    project.hpipe("repro")
    assert project.read("second.txt").strip() == start
    assert lock_dep(project, "second")["commit"] == start
    assert "second" in status(project) and "first" in status(project)


def test_the_in_project_hangar_repository_is_ignored_by_git(project: Project, data: Repo) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=project.root, check=True)
    project.pipeline(READER)
    project.hpipe("repro")
    assert {"/.hpipe/", "/.hangar", "/model.txt"} <= set(project.read(".gitignore").splitlines())


def test_fast_status_agrees_with_hangar_status(project: Project, data: Repo) -> None:
    """compat.staged_status, which stands in for Hangar's writer `diff.status()`, against Hangar's
    own as the staging area is changed, reset, committed."""
    from hangar_pipe.hangar import compat

    with compat.quiet():
        co = data.repo.checkout(write=True)
    try:
        seen = []

        def check() -> None:
            seen.append(compat.ORIGINAL_STATUS[0](co._differ))
            assert co.diff.status() == seen[-1] == compat.staged_status(co._differ)

        check()
        col = co.columns["imgs"]
        with col:
            col[3] = np.zeros(16, np.float32)
        check()
        with compat.quiet():
            co.reset_staging_area()
        check()
        col = co.columns["imgs"]  # (a reset closes the column objects)
        with col:
            del col[4]
        check()
        with compat.quiet():
            co.reset_staging_area()
        co.add_ndarray_column("fresh", shape=(2,), dtype=np.float32)
        check()
        co.commit("a new column")
        check()
        assert seen == ["CLEAN", "DIRTY", "CLEAN", "DIRTY", "DIRTY", "CLEAN"]
    finally:
        co.close()
