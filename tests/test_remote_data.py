"""The data remote: `hpipe data push` / `hpipe data pull` against a real `hangar server` process."""

from __future__ import annotations

import shutil
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hangarserver
import numpy as np
import pytest
from conftest import Project, user_error
from hangar_repo import READER, Repo, images, labels

from hangar_pipe.errors import TransferError
from hangar_pipe.hangar import compat, remote

STAGES = textwrap.dedent(READER)  # one stage reading imgs and labels


@pytest.fixture
def server(tmp_path: Path) -> Iterator[hangarserver.HangarServer]:
    srv = hangarserver.start(tmp_path / "server", config=hangarserver.FAST_CONFIG)
    yield srv
    srv.stop()


def make_project(root: Path, address: str) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    project = Project(root)
    project.pipeline(f"data: {{remote: '{address}'}}\n" + STAGES)
    return project


def git_clone(source: Project, root: Path) -> Project:
    """What `git clone` of the project gives: pipeline.yaml and pipeline.lock, no data."""
    root.mkdir(parents=True)
    for name in ("pipeline.yaml", "pipeline.lock"):
        if source.exists(name):
            shutil.copy(source.root / name, root / name)
    return Project(root)


def read_all(folder: Path, column: str, commit: str | None = None) -> dict[Any, bytes]:
    """Every sample of a column, as bytes, read with Hangar's own API (raises FileNotFoundError
    for a sample whose data was not fetched)."""
    hangar = compat.import_hangar()
    with compat.quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "contains reference-only samples": expected
        repo = hangar.Repository(str(folder), exists=True)
        co = repo.checkout(commit=commit) if commit else repo.checkout()
        try:
            col = co.columns[column]
            return {k: np.asarray(col[k]).tobytes() for k in col.keys()}  # noqa: SIM118 - a Hangar column
        finally:
            co.close()


def one_error(done: Any, code: int = 1) -> str:
    assert done.code == code, f"exit {done.code}\n{done.out}\n{done.err}"
    assert "Traceback" not in done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    return str(lines[0])


def test_push_then_pull_into_a_fresh_clone_fetches_only_the_columns_the_stages_read(
        tmp_path: Path, server: hangarserver.HangarServer) -> None:
    a = make_project(tmp_path / "a", server.address)
    data = Repo(a.root)
    first = data.write("one", imgs=images(400), labels=labels(400), extra=images(400, seed=9))
    a.hpipe("repro")
    done = a.hpipe("data", "push")
    assert f"Pushed master to {server.address}: 1 commit(s)" in done.out
    assert "nothing to push" in a.hpipe("data", "push").out
    assert compat.server_branch_head(server.address, "master") == first

    b = git_clone(a, tmp_path / "b")
    done = b.hpipe("data", "pull")
    assert "master from" in done.out and "cloned" in done.out
    assert f"columns at {first[:10]}…: imgs, labels" in done.out
    assert read_all(b.root, "imgs") == read_all(a.root, "imgs")
    assert read_all(b.root, "labels") == read_all(a.root, "labels")
    with pytest.raises(FileNotFoundError):
        read_all(b.root, "extra")
    # the fetched data is what the lock recorded: the stage sees the same fingerprints
    assert "changed deps" not in b.hpipe("status").out

    # a new commit: an incremental push, then a pull fetches only the new samples
    second = data.write("two", imgs={i: v + 1 for i, v in images(50, seed=3).items()},
                        labels=labels(400, offset=1))
    a.hpipe("repro")
    assert "1 commit(s)" in a.hpipe("data", "push").out
    shutil.copy(a.root / "pipeline.lock", b.root / "pipeline.lock")
    done = b.hpipe("data", "pull")
    assert "updated" in done.out and f"columns at {second[:10]}…: imgs, labels" in done.out
    assert "Fetched 50 sample(s)" in done.out  # 50 new images; the labels' 10 values are all here
    assert read_all(b.root, "imgs") == read_all(a.root, "imgs")
    assert read_all(b.root, "labels") == read_all(a.root, "labels")
    assert "up to date" in b.hpipe("data", "pull").out
    # an older data version on request, and named columns
    done = b.hpipe("data", "pull", "--data-commit", first, "--columns", "extra")
    assert read_all(b.root, "extra", first) == read_all(a.root, "extra", first)


def test_a_rejected_push_names_both_heads_and_leaves_the_server_as_it_was(
        tmp_path: Path, server: hangarserver.HangarServer) -> None:
    a = make_project(tmp_path / "a", server.address)
    Repo(a.root).write("one", imgs=images(100), labels=labels(100))
    a.hpipe("data", "push")
    b = git_clone(a, tmp_path / "b")
    b.hpipe("data", "pull")
    theirs = Repo(b.root).write("b's change", labels=labels(100, offset=3))
    ours = Repo(a.root).write("a's change", labels=labels(100, offset=5))
    a.hpipe("data", "push")

    line = one_error(b.hpipe("data", "push", check=None))
    assert line.startswith("hpipe: error: push rejected: master on the hangar server")
    assert ours[:10] in line and theirs[:10] in line and "hpipe data pull" in line
    assert compat.server_branch_head(server.address, "master") == ours

    # pulling does not move the diverged local branch: the server's commits go to hpipe/master
    line = one_error(b.hpipe("data", "pull", check=None))
    assert "have diverged" in line and "hpipe/master" in line
    hangar = compat.import_hangar()
    with compat.quiet():
        repo = hangar.Repository(str(b.root), exists=True)
    assert repo.log(branch="master", return_contents=True)["head"] == theirs
    assert repo.log(branch="hpipe/master", return_contents=True)["head"] == ours


def test_the_warning_hangar_gives_for_a_rejected_push_is_seen_even_when_warnings_are_silenced(
        tmp_path: Path, server: hangarserver.HangarServer) -> None:
    first = tmp_path / "first"
    first.mkdir()
    Repo(first).write("one", imgs=images(20))
    remote.push(first, server.address)
    other = tmp_path / "other"
    other.mkdir()
    Repo(other).write("unrelated", imgs=images(20, seed=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with compat.transfer_output() as caught:
            repository = compat.import_hangar().Repository(str(other), exists=True)
            repository.remote.add("x", server.address)
            repository.remote.push("x", "master")
    assert any("REJECTED" in str(w.message) for w in caught)
    with pytest.raises(TransferError, match="push rejected"):
        remote.push(other, server.address)


def test_an_unreachable_server_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    address = f"127.0.0.1:{hangarserver.free_port()}"
    a = make_project(tmp_path / "a", address)
    Repo(a.root).write("one", imgs=images(10), labels=labels(10))
    line = one_error(a.hpipe("data", "push", check=None, timeout=30))
    assert line == (f"hpipe: error: cannot reach the hangar server at {address} (Connection refused);"
                    f" is `hpipe data server FOLDER --port {address.split(':')[1]}` running there?")
    b = git_clone(a, tmp_path / "b")
    one_error(b.hpipe("data", "pull", check=None, timeout=30))
    assert not b.exists(".hangar")


def test_a_server_gone_between_records_and_data_fails_in_one_line_and_a_rerun_resumes(
        tmp_path: Path) -> None:
    srv = hangarserver.start(tmp_path / "server")
    try:
        a = make_project(tmp_path / "a", srv.address)
        Repo(a.root).write("one", imgs=images(300), labels=labels(300))
        a.hpipe("data", "push")
        b = git_clone(a, tmp_path / "b")
        records = remote.fetch_records(b.root, srv.address)
        srv.kill()
        with pytest.raises(TransferError, match="cannot reach the hangar server"):
            remote.fetch_data(b.root, srv.address, {records.head: ["imgs"]})
        srv = hangarserver.start(tmp_path / "server", port=srv.port)
        done = b.hpipe("data", "pull")
        assert "Fetched 310 sample(s)" in done.out
        assert read_all(b.root, "imgs") == read_all(a.root, "imgs")
    finally:
        srv.stop()


@pytest.mark.parametrize("value, message", [
    ("grpc://h:1", "got 'grpc://h:1' (no scheme: give host:port)"),
    ("localhost", "got 'localhost'"),
    ("h:0", "got 'h:0'"),
    ("h:99999", "got 'h:99999'"),
])
def test_a_malformed_remote_is_a_one_line_error(project: Project, value: str, message: str) -> None:
    project.pipeline(f"data:\n  remote: '{value}'\n" + STAGES)
    line = user_error(project.hpipe("data", "push", check=None))
    assert line == ("hpipe: error: pipeline.yaml:2: data.remote: expected host:port of a hangar server,"
                    f" such as localhost:50051, {message}")


def test_no_remote_and_unknown_columns_are_one_line_errors(
        tmp_path: Path, server: hangarserver.HangarServer) -> None:
    project = Project(tmp_path / "p")
    project.root.mkdir()
    project.pipeline(STAGES)
    assert "no data remote: add `remote: host:port`" in user_error(project.hpipe("data", "pull", check=None))
    a = make_project(tmp_path / "a", server.address)
    Repo(a.root).write("one", imgs=images(10), labels=labels(10))
    a.hpipe("data", "push")
    line = user_error(a.hpipe("data", "pull", "--columns", "imgz", check=None))
    assert "--columns: no column 'imgz' at" in line and "columns there: imgs, labels" in line


def test_pushing_the_same_commits_to_a_second_server_works(
        tmp_path: Path, server: hangarserver.HangarServer) -> None:
    """Hangar raises ValueError ('no-op performed') when its remote-tracking branch is already at
    the pushed head; hpipe treats that push as done, after checking the new server's head."""
    a = make_project(tmp_path / "a", server.address)
    head = Repo(a.root).write("one", imgs=images(20), labels=labels(20))
    a.hpipe("data", "push")
    other = hangarserver.start(tmp_path / "server2", config=hangarserver.FAST_CONFIG)
    try:
        a.pipeline(f"data: {{remote: '{other.address}'}}\n" + STAGES)
        assert "1 commit(s)" in a.hpipe("data", "push").out
        assert compat.server_branch_head(other.address, "master") == head
    finally:
        other.stop()


def test_a_writer_of_a_partial_clone_warns_of_reference_only_samples_as_hangar_does(
        tmp_path: Path, server: hangarserver.HangarServer) -> None:
    """Where samples are references to a remote, a writer checkout gets Hangar's own sample maps
    (compat.lazy_flat_column stands aside), and its warning naming the column, as it opens."""
    a = make_project(tmp_path / "a", server.address)
    Repo(a.root).write("one", imgs=images(40), labels=labels(40), extra=images(40, seed=9))
    a.hpipe("data", "push")
    b = git_clone(a, tmp_path / "b")
    b.hpipe("data", "pull")  # imgs and labels: the columns the stage reads; extra stays remote
    hangar = compat.import_hangar()
    with compat.quiet(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        co = hangar.Repository(str(b.root), exists=True).checkout(write=True)
    try:
        said = [str(w.message) for w in caught if "reference-only" in str(w.message)]
        assert len(said) == 1 and "extra" in said[0]
        assert all(type(co.columns[c]._samples) is dict for c in ("imgs", "labels", "extra"))
        assert len(co.columns["extra"]) == 40 and co.columns["extra"].contains_remote_references
    finally:
        co.close()
