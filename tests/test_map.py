"""`uses: map` end to end: the real hpipe on real Hangar repositories. Added, modified and removed
samples flow through incrementally and give exactly what a full recompute gives; code, params and
`-f` recompute everything; a failing sample, a kill and a bad function commit nothing; `-j 2`
works in several processes; `--verify` recomputes and compares."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Project, user_error
from hangar_repo import Repo, images

from hangar_pipe.hangar.keys import key_value, sort_keys
from hangar_pipe.hangar.store import HangarStore
from hangar_pipe.training.bulk_read import read_column

PIPELINE = """
    data: {repo: .}
    stages:
      norm:
        uses: map
        with: {fn: "feats:scale", inputs: [imgs], outputs: [out], args: {k: "${norm.k}"}, batch: BATCH}
        deps: [{hangar: [imgs]}]
        params: [norm.k]
        outs: [{hangar: [out]}]
"""
FEATS = """
    import os, time
    import numpy as np

    def scale(sample, k):
        x = sample["imgs"]
        if os.path.exists("slow"):
            open("started", "w").close()
            time.sleep(0.2)
        if os.path.isdir("pids"):
            open(f"pids/{os.getpid()}", "w").close()
        if np.any(x < 0):
            raise ValueError("negative pixels")
        if np.any(x > 5):  # a bug that shows on some data only: a result of another shape
            return {"out": x[..., :3]}
        offset = float(open("offset.txt").read()) if os.path.exists("offset.txt") else 0.0  # not tracked
        return {"out": (x * np.float32(k) + np.float32(offset)).astype(np.float32)}

    def scale_any(sample, k):
        (x,) = sample.values()
        return x * np.float32(k)
"""


def setup(project: Project, n: int = 40, batch: str = "null") -> Repo:
    repo = Repo(project.root)
    repo.write("data", imgs=images(n))
    project.write("feats.py", FEATS)
    project.write("params.yaml", "norm: {k: 2.0}\n")
    project.pipeline(PIPELINE.replace("BATCH", batch))
    return repo


def head(project: Project) -> str:
    return HangarStore(project.root).branches()["master"]


def column(project: Project, name: str, commit: str | None = None) -> dict[bytes, np.ndarray]:
    store = HangarStore(project.root)
    at = commit or head(project)
    keys = sort_keys(store.samples(at, name))
    return dict(zip(keys, read_column(store, at, name, keys)))


def assert_mapped(project: Project, k: float, offset: float = 0.0) -> None:
    """The output column holds exactly k * imgs + offset for every input sample, and nothing else."""
    imgs, out = column(project, "imgs"), column(project, "out")
    assert out.keys() == imgs.keys()
    for key, x in imgs.items():
        assert out[key].tobytes() == (x * np.float32(k) + np.float32(offset)).astype(np.float32).tobytes(), key


def fingerprint(project: Project, name: str = "out") -> str:
    state = HangarStore(project.root).column(head(project), name)
    assert state is not None
    return state.fingerprint


def edit(repo: Repo, modify: tuple[int, ...] = (), add: tuple[int, ...] = (), remove: tuple[int, ...] = (),
         value: float = 0.5) -> str:
    def change(co: object) -> None:
        col = co.columns["imgs"]  # type: ignore[attr-defined]
        with col:
            for key in (*modify, *add):
                col[key] = np.full(16, value + key / 1000, np.float32)
            for key in remove:
                del col[key]
    return repo.edit("edit", change)


@pytest.mark.parametrize("batch", ["null", "8"])
def test_add_modify_delete_flow_through_incrementally_as_a_full_recompute(project: Project, batch: str) -> None:
    repo = setup(project, batch=batch)
    first_data = head(project)
    first = project.hpipe("repro")
    assert "norm: computing all 40 samples (no earlier run of this stage here)" in first.out
    assert_mapped(project, 2.0)
    edit(repo, modify=(3, 5), add=(100, 101), remove=(7,))
    status = json.loads(project.hpipe("status", "--json").out)
    assert status["norm"] == {"samples changed": {"added": 2, "modified": 2, "removed": 1, "since": first_data}}
    assert "• norm: would run (5 samples changed (2 added, 2 modified, 1 removed)" in project.hpipe("status").out
    before = head(project)
    done = project.hpipe("repro")
    assert "norm: 5 samples changed (2 added, 2 modified, 1 removed) since a=" in done.out
    assert "computed 4 samples and deleted 1" in done.out
    assert head(project) != before and len(HangarStore(project.root).parents(head(project))) == 1  # one commit
    assert_mapped(project, 2.0)
    incremental = fingerprint(project)
    again = project.hpipe("repro", "-f", "-s", "norm")  # everything from scratch, on the same inputs
    assert "computing all 41 samples (forced (-f))" in again.out
    assert "the output columns are unchanged; nothing to commit" in again.out  # the very same data
    assert fingerprint(project) == incremental
    assert project.hpipe("repro").out.strip().endswith("Everything is up to date.")


def test_code_and_params_changes_recompute_everything(project: Project) -> None:
    setup(project)
    project.hpipe("repro")
    project.write("params.yaml", "norm: {k: 3.0}\n")
    assert "changed params" in project.hpipe("status").out
    done = project.hpipe("repro")
    assert "computing all 40 samples (its function, arguments, params, code or input schemas changed)" in done.out
    assert_mapped(project, 3.0)
    project.write("feats.py", FEATS.replace("* np.float32(k)", "* np.float32(k) * np.float32(2)"))
    assert "changed deps: code:feats" in project.hpipe("status").out
    assert "computing all 40 samples" in project.hpipe("repro").out
    assert_mapped(project, 6.0)
    project.write("params.yaml", "norm: {k: 3.0}  # a comment: the same value\n")
    assert project.hpipe("repro").out.strip().endswith("Everything is up to date.")


def test_a_failing_sample_commits_nothing_and_names_its_key(project: Project) -> None:
    repo = setup(project)
    project.hpipe("repro")
    good = fingerprint(project)
    bad = edit(repo, modify=(2,), add=(9,), value=-1.0)  # negative pixels: the function raises
    done = project.hpipe("repro", check=1)
    assert "fn feats:scale failed on sample 2: ValueError: negative pixels" in done.out + done.err
    assert "Traceback" not in done.out + done.err
    assert head(project) == bad and fingerprint(project) == good  # the last good output stays
    assert not (project.root / ".hangar" / "hpipe-writer.json").exists()  # lock released, staging clean
    edit(repo, modify=(2, 9), value=0.25)
    fixed = project.hpipe("repro")
    assert "2 samples changed (0 added, 2 modified, 0 removed)" in fixed.out  # from the last good run
    assert_mapped(project, 2.0)


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_killed_mid_stage_commits_nothing_and_the_rerun_goes_on_incrementally(project: Project) -> None:
    repo = setup(project)
    project.hpipe("repro")
    good = fingerprint(project)
    edited = edit(repo, modify=(1, 2, 3))
    project.write("feats.py", FEATS.replace("time.sleep(0.2)", "time.sleep(1.5)"))
    project.hpipe("repro", "-f")  # (the slower code: a full run, with no "slow" file yet)
    good, edited = fingerprint(project), edit(repo, modify=(4, 5, 6))
    (project.root / "slow").touch()
    proc = project.popen("repro")
    wait_for(project.root / "started")
    proc.send_signal(signal.SIGKILL)  # hpipe dies mid-stage; the next run stops what it left
    proc.wait(timeout=30)  # (not its output: the stage it left still holds the pipe)
    done = project.hpipe("repro")
    assert "taking over from an interrupted run" in done.out
    assert "3 samples changed (0 added, 3 modified, 0 removed)" in done.out  # from the last good run
    assert HangarStore(project.root).parents(head(project)) == [edited]  # the killed run committed nothing
    assert fingerprint(project) != good
    (project.root / "slow").unlink()
    assert_mapped(project, 2.0)
    assert not (project.root / ".hangar" / "hpipe-writer.json").exists()


def test_sigterm_of_the_stage_commits_nothing(project: Project) -> None:
    repo = setup(project)
    project.hpipe("repro")
    edited = edit(repo, modify=(4,))
    (project.root / "slow").touch()
    proc = project.popen("repro")
    wait_for(project.root / "started")
    proc.send_signal(signal.SIGINT)  # Ctrl-C: hpipe stops its stage
    proc.communicate(timeout=60)
    assert proc.returncode != 0 and head(project) == edited
    (project.root / "slow").unlink()
    assert "1 sample changed (0 added, 1 modified, 0 removed)" in project.hpipe("repro").out


@pytest.mark.parametrize("how", ["-j", "workers"])
def test_samples_are_computed_in_several_processes(project: Project, how: str) -> None:
    setup(project, n=600)
    (project.root / "pids").mkdir()
    if how == "workers":
        project.pipeline(PIPELINE.replace("BATCH", "null").replace("batch: null", "batch: null, workers: 2"))
        project.hpipe("repro")
    else:
        project.hpipe("repro", "-j", "2")
    assert len(os.listdir(project.root / "pids")) >= 3  # the stage, then two forked workers
    assert_mapped(project, 2.0)


def test_verify_recomputes_every_sample_and_compares(project: Project) -> None:
    repo = setup(project, batch="16")
    project.hpipe("repro")
    edit(repo, modify=(5,), remove=(6,))
    project.hpipe("repro")
    committed = head(project)
    done = project.hpipe("repro", "--verify")
    assert "norm: verified 39 samples: the output commit" in done.out
    assert "verify norm: reproduced exactly" in done.out and head(project) == committed
    (project.root / "offset.txt").write_text("0.5")  # an input hpipe does not track: results differ
    failed = project.hpipe("repro", "--verify", check=1)
    assert "verify: 39 of 39 samples of column 'out'" in failed.out + failed.err
    assert "differ from a full recompute: 0, 1, 2, 3, 4, …" in failed.out + failed.err
    assert head(project) == committed


def test_pinned_data_commit_holds_the_map_stage_back(project: Project) -> None:
    repo = setup(project)
    first_data = head(project)
    project.hpipe("repro")
    output_commit = head(project)
    edit(repo, modify=(1,))
    project.hpipe("repro")
    pinned = project.hpipe("repro", "--data-commit", first_data)
    assert "· norm: pinned" in pinned.out
    old = column(project, "out", output_commit)  # the output commit the lock recorded then
    assert old[b"#1"].tobytes() == (column(project, "imgs", first_data)[b"#1"] * 2).tobytes()


def test_bad_input(project: Project) -> None:
    setup(project)
    project.pipeline(PIPELINE.replace("BATCH", "null").replace("feats:scale", "nosuch:scale"))
    done = project.hpipe("repro", check=1)
    assert "with.fn: cannot import module 'nosuch'" in done.out + done.err and "Traceback" not in done.err
    project.pipeline(PIPELINE.replace("BATCH", "null").replace("imgs]", "imgz]"))  # with.inputs and deps
    missing = user_error(project.hpipe("repro", check=2))
    assert "hangar column 'imgz' not found in . at master" in missing and "columns there: imgs" in missing
    project.pipeline(PIPELINE.replace("BATCH", "null") + '      other:\n        cmd: "true"\n'
                     "        outs: [{hangar: [out]}]\n")
    assert "stages 'norm' and 'other' both declare output 'hangar:.:out'" in user_error(project.hpipe("status", check=2))
    project.pipeline(PIPELINE.replace("BATCH", "null").replace("outputs: [out]", "outputs: [out], bogus: 1"))
    assert "unknown key for uses: map" in user_error(project.hpipe("status", check=2))


def test_a_wrong_result_in_an_incremental_run_names_the_sample(project: Project) -> None:
    repo = setup(project)
    project.hpipe("repro")
    good = fingerprint(project)
    edited = edit(repo, modify=(3, 25), value=10.0)  # the function returns 3 values for these
    done = project.hpipe("repro", check=1)  # (the stage's exit code 2: hpipe's is 1, a stage failed)
    assert "2 samples changed (0 added, 2 modified, 0 removed)" in done.out
    assert "'out' of sample 3 is shape (3,) float32, expected shape (16,) float32" in done.out + done.err
    assert head(project) == edited and fingerprint(project) == good


def test_keys_keep_their_names(project: Project) -> None:
    repo = Repo(project.root)
    repo.write("data", imgs={"a": np.ones(16, np.float32), "b": np.zeros(16, np.float32)})
    project.write("feats.py", FEATS)
    project.write("params.yaml", "norm: {k: 2.0}\n")
    project.pipeline(PIPELINE.replace("BATCH", "null"))
    project.hpipe("repro")
    assert {key_value(k) for k in column(project, "out")} == {"a", "b"}


DIE_AFTER_COMMIT = """
    import os
    if os.environ.get("DIE_AFTER_COMMIT"):  # the stage dies between its commit and its record
        from hangar_pipe.stages import map as stage
        stage._record = lambda *args, **kwargs: os._exit(9)
"""


def test_killed_between_commit_and_record_the_next_run_adopts_the_commit(project: Project) -> None:
    repo = setup(project)
    project.hpipe("repro")
    edit(repo, modify=(1, 2))
    project.write("hook/sitecustomize.py", DIE_AFTER_COMMIT)
    env = {"PYTHONPATH": str(project.root / "hook"), "HPIPE_NO_WARM": "1", "DIE_AFTER_COMMIT": "1"}
    died = project.hpipe("repro", env=env, check=1)
    assert "norm: committed a=" in died.out and "exited with code 9" in died.out
    committed = head(project)
    done = project.hpipe("repro")
    assert f"norm: adopting its commit {committed[:10]}" in done.out, done.out
    assert "no input sample changed" in done.out and "computing all" not in done.out
    assert head(project) == committed
    assert_mapped(project, 2.0)
    edit(repo, modify=(3,))
    assert "1 sample changed (0 added, 1 modified, 0 removed)" in project.hpipe("repro").out


def test_verify_of_a_stale_stage_brings_it_up_to_date_first(project: Project) -> None:
    repo = setup(project)
    project.hpipe("repro")
    edit(repo, modify=(8,))
    done = project.hpipe("repro", "--verify")
    assert "1 sample changed (0 added, 1 modified, 0 removed)" in done.out and "verified" not in done.out
    assert_mapped(project, 2.0)
    assert "norm: verified 40 samples" in project.hpipe("repro", "--verify").out


def test_sibling_map_stages_with_jobs_take_turns_at_the_writer_lock(project: Project) -> None:
    Repo(project.root).write("data", imgs=images(30), more=images(30, seed=1))
    project.write("feats.py", FEATS)
    project.write("params.yaml", "norm: {k: 2.0}\n")
    project.pipeline(PIPELINE.replace("BATCH", "null") + (
        "      norm2:\n"
        "        uses: map\n"
        "        with: {fn: 'feats:scale_any', inputs: [more], outputs: [more_out], args: {k: 2.0}}\n"
        "        deps: [{hangar: [more]}]\n"
        "        outs: [{hangar: [more_out]}]\n"))
    done = project.hpipe("repro", "-j", "2")
    assert sorted(project.ran(done)) == ["norm", "norm2"]
    assert_mapped(project, 2.0)


def test_two_inputs_with_named_keys_and_a_schema_change(project: Project) -> None:
    repo = Repo(project.root)
    rng = np.random.default_rng(3)
    keys = ["a", "b", "c", 1, 2]
    repo.write("data", x={k: rng.random(4, dtype=np.float32) for k in keys},
               w={k: rng.random(4, dtype=np.float32) for k in keys})
    project.write("two.py", """
        import numpy as np

        def combine(sample, width=4):
            return {"s": (sample["x"] + sample["w"])[:width], "p": (sample["x"] * sample["w"]).astype(np.float64)}
    """)
    project.pipeline("""
        data: {repo: .}
        stages:
          two:
            uses: map
            with: {fn: "two:combine", inputs: [x, w], outputs: [s, p], args: {width: 4}}
            deps: [{hangar: [x, w]}]
            outs: [{hangar: [s, p]}]
    """)
    project.hpipe("repro")

    def check(width: int) -> None:
        x, w, s, p = (column(project, c) for c in ("x", "w", "s", "p"))
        assert s.keys() == p.keys() == x.keys()
        for key in x:
            assert s[key].tobytes() == (x[key] + w[key])[:width].tobytes()
            assert p[key].tobytes() == (x[key] * w[key]).astype(np.float64).tobytes()

    check(4)

    def change(co: object) -> None:
        with co.columns["w"] as col:  # type: ignore[attr-defined]
            col["b"] = np.zeros(4, np.float32)
            col[7] = np.ones(4, np.float32)
        with co.columns["x"] as col:  # type: ignore[attr-defined]
            col[7] = np.ones(4, np.float32)
            del col[2]
        with co.columns["w"] as col:  # type: ignore[attr-defined]
            del col[2]

    repo.edit("edit", change)
    assert "3 samples changed (1 added, 1 modified, 1 removed)" in project.hpipe("repro").out
    check(4)
    project.pipeline(project.read("pipeline.yaml").replace("width: 4", "width: 2"))  # s: (4,) -> (2,)
    assert "computing all 5 samples" in project.hpipe("repro").out
    check(2)
    repo.edit("one column alone", lambda co: co.columns["x"].__setitem__("zz", np.ones(4, np.float32)))
    done = project.hpipe("repro", check=1)
    assert "sample 'zz' was added to column 'x' alone" in done.out + done.err


def test_inputs_and_outputs_must_be_declared_and_read_on_the_written_branch(project: Project) -> None:
    setup(project)
    project.pipeline(PIPELINE.replace("BATCH", "null").replace("deps: [{hangar: [imgs]}]", "deps: []"))
    assert "with.inputs: column 'imgs' is not in a `- hangar:` entry of the stage's deps" in \
        user_error(project.hpipe("status", check=2))
    project.pipeline(PIPELINE.replace("BATCH", "null").replace("outputs: [out]", "outputs: [out, extra]"))
    assert "with.outputs: column 'extra' is not in a `- hangar:` entry of the stage's outs" in \
        user_error(project.hpipe("status", check=2))
    Repo(project.root).branch("raw")
    project.pipeline(PIPELINE.replace("BATCH", "null").replace(
        "deps: [{hangar: [imgs]}]", "deps: [{hangar: {ref: raw, columns: [imgs]}}]"))
    done = project.hpipe("repro", check=1)
    assert "column 'imgs' is a dep at ref 'raw', but a map stage reads its inputs at the head of the branch" \
        in done.out + done.err


def test_gc_removes_the_records_of_map_stages_that_are_gone(project: Project) -> None:
    setup(project)
    project.hpipe("repro")
    assert (project.root / ".hpipe" / "map" / "norm" / "state.json").exists()
    project.hpipe("gc")
    assert (project.root / ".hpipe" / "map" / "norm" / "state.json").exists()  # still a stage
    project.pipeline("""
        stages:
          other:
            cmd: echo hi > hi.txt
            outs: [hi.txt]
    """)
    done = project.hpipe("gc")
    assert "1 resume states" in done.out and not (project.root / ".hpipe" / "map" / "norm").exists()
