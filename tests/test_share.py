"""The point of remotes (issue 11): a colleague clones the project with git, pulls, and gets the
recorded results of any data commit back without recomputing them, or recomputes them to the
same bytes. A real `hangar server`, a real folder remote, a real `git clone`."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import hangarserver
import pytest
from conftest import HPIPE, Project
from hangar_repo import Repo, images, labels

FIT = """
import json
import numpy as np
from hangar_pipe.data import open_columns

with open_columns(["imgs", "labels"]) as cols:
    keys = sorted(cols["imgs"].keys())
    x = np.stack([np.asarray(cols["imgs"][k], dtype=np.float64).ravel() for k in keys])
    y = np.array([int(np.asarray(cols["labels"][k]).ravel()[0]) for k in keys])
classes = np.unique(y)
centroids = np.stack([x[y == c].mean(axis=0) for c in classes])  # a nearest-centroid model
np.save("model.npy", centroids)
pred = classes[np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
json.dump({"accuracy": float((pred == y).mean()), "samples": len(keys)}, open("metrics.json", "w"))
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[hangarserver.HangarServer]:
    """`hpipe data server`: Hangar's own server, as a user starts it."""
    port = hangarserver.free_port()
    proc = subprocess.Popen([*HPIPE, "data", "server", str(tmp_path / "server"), "--ip", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = hangarserver.HangarServer(tmp_path / "server", port, proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "hpipe data server did not start"
            time.sleep(0.1)
    yield srv
    srv.stop()


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def clone(a: Project, root: Path) -> Project:
    git(a.root.parent, "clone", "-q", str(a.root), str(root))
    return Project(root)


def machine_a(root: Path, address: str, remote: Path) -> tuple[Project, str, str, bytes]:
    """A project that ran on two data commits and pushed everything; (project, first commit,
    second commit, the first commit's metrics)."""
    a = Project(root)
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "a@example.com")
    git(root, "config", "user.name", "a")
    a.write("fit.py", FIT)
    a.pipeline(f"""
        data: {{remote: '{address}'}}
        stages:
          fit:
            cmd: python fit.py
            deps: [fit.py, {{hangar: [imgs, labels]}}]
            outs: [model.npy]
            metrics: [metrics.json]
    """)
    data = Repo(root)
    first = data.write("one", imgs=images(300), labels=labels(300))
    a.hpipe("repro")
    metrics_first = (root / "metrics.json").read_bytes()
    second = data.write("relabel", labels=labels(40, offset=1))
    a.hpipe("repro")
    a.hpipe("remote", "add", "origin", str(remote), "--default")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the project")
    done = a.hpipe("push", "--run-cache")
    assert "pushed 4 objects" in done.out and "and 2 run-cache entries to 'origin'" in done.out, done.out
    assert f"Pushed master to {address}: 2 commit(s)" in done.out
    return a, first, second, metrics_first


def test_a_fresh_clone_restores_or_recomputes_any_recorded_result(tmp_path: Path,
                                                      server: hangarserver.HangarServer) -> None:
    a, first, second, metrics_first = machine_a(tmp_path / "a", server.address, tmp_path / "remote")
    b = clone(a, tmp_path / "b")
    assert not (b.root / ".hangar").exists() and not b.exists("model.npy")

    done = b.hpipe("pull", "--run-cache")
    assert "cloned" in done.out and "restored metrics.json, model.npy" in done.out, done.out
    assert b.read("metrics.json") == a.read("metrics.json")
    assert (b.root / "model.npy").read_bytes() == (a.root / "model.npy").read_bytes()
    assert "Everything is up to date." in b.hpipe("status").out

    # the first data commit's results: restored from the pulled run cache, nothing recomputed
    done = b.hpipe("repro", "--data-commit", first)
    assert "↺ fit: restored from run" in done.out and b.ran(done) == [], done.out
    assert (b.root / "metrics.json").read_bytes() == metrics_first

    # recomputed on the fetched data (the first commit's samples fetched on demand): same bytes
    (b.root / "metrics.json").unlink()
    done = b.hpipe("repro", "--data-commit", first, "--no-run-cache", "--pull")
    assert b.ran(done) == ["fit"], done.out
    assert (b.root / "metrics.json").read_bytes() == metrics_first

    # `repro --pull` in another clone, with no `hpipe pull` first: what a stage needs, on demand
    c = clone(a, tmp_path / "c")
    done = c.hpipe("repro", "--data-commit", first, "--pull")  # no `hpipe pull` first
    assert "↺ fit: restored from run" in done.out and c.ran(done) == [], done.out
    assert (c.root / "metrics.json").read_bytes() == metrics_first

    # an output missing here but on the remote: status says so; repro --pull puts it back
    c.hpipe("repro", "--pull")
    (c.root / "model.npy").unlink()
    (c.root / ".hpipe" / "cache").rename(c.root / "old-cache")
    assert "on remote 'origin'" in c.hpipe("status").out
    done = c.hpipe("repro", "--pull")
    assert "↺ fit: restored from pipeline.lock's record" in done.out, done.out
    assert (c.root / "model.npy").read_bytes() == (a.root / "model.npy").read_bytes()
