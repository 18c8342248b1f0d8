"""The pieces under the CLI: fingerprints and the stat cache, the lock file, the graph, the Python API."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import xxhash
import yaml
from conftest import Project

from hangar_pipe import Pipeline, UserError
from hangar_pipe.core import fingerprint
from hangar_pipe.core.lockfile import LockFile
from hangar_pipe.core.params import compare_values
from hangar_pipe.core.statcache import SqliteStatCache


def _backdate(path: str) -> None:
    old = time.time() - 60
    os.utime(path, (old, old))


def test_file_hash_is_xxh3_128(tmp_path) -> None:
    data = os.urandom(5 * fingerprint.CHUNK + 123)
    (tmp_path / "f").write_bytes(data)
    assert fingerprint.hash_file(tmp_path / "f") == xxhash.xxh3_128_hexdigest(data)


def test_folder_hash_is_a_sorted_manifest(tmp_path) -> None:
    for rel, text in (("b/x", "1"), ("a", "2"), ("b/y/z", "3")):
        (tmp_path / "d" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / rel).write_text(text)
    fp = fingerprint.fingerprint_path(str(tmp_path / "d"))
    manifest = "".join(f"{rel}\0{xxhash.xxh3_128_hexdigest(t.encode())}\n"
                       for rel, t in (("a", "2"), ("b/x", "1"), ("b/y/z", "3")))
    assert fp == fingerprint.Fingerprint(xxhash.xxh3_128_hexdigest(manifest.encode()), 3, 3)
    (tmp_path / "d/b/x").rename(tmp_path / "d/b/w")  # a rename changes the folder's hash
    assert fingerprint.fingerprint_path(str(tmp_path / "d")).hash != fp.hash
    assert fingerprint.fingerprint_path(str(tmp_path / "missing")) is None


def test_stat_cache_skips_rereading_unchanged_files(tmp_path, monkeypatch) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 1000)
    _backdate(str(path))
    reads: list[str] = []
    real = fingerprint.hash_file
    monkeypatch.setattr(fingerprint, "hash_file", lambda p: reads.append(str(p)) or real(p))
    db = SqliteStatCache(tmp_path / ".hpipe" / "state.db")
    first = fingerprint.fingerprint_path(str(path), db)
    db.close()
    assert len(reads) == 1
    db = SqliteStatCache(tmp_path / ".hpipe" / "state.db")  # a new process would see the same database
    assert fingerprint.fingerprint_path(str(path), db) == first
    assert len(reads) == 1, "unchanged file was not re-read"
    path.write_bytes(b"y" * 1000)  # same size, new content and mtime
    _backdate(str(path))
    os.utime(path, (time.time() - 30, time.time() - 30))
    assert fingerprint.fingerprint_path(str(path), db).hash != first.hash
    assert len(reads) == 2
    db.close()


def test_recently_written_files_are_not_cached(tmp_path) -> None:
    path = tmp_path / "fresh"
    path.write_text("a")
    db = SqliteStatCache(tmp_path / ".hpipe" / "state.db")
    fingerprint.fingerprint_path(str(path), db)
    db.flush()
    assert db.get(str(path), os.stat(path)) is None  # could still change within its mtime tick


def test_lock_file_round_trip_and_order(tmp_path) -> None:
    lock = LockFile(tmp_path / "pipeline.lock")
    lock.record("zeta", {"cmd": "z", "outs": [{"path": "z", "hash": "00", "size": 1}]})
    lock.record("alpha", {"cmd": "a"})
    text = (tmp_path / "pipeline.lock").read_text()
    assert text.index("alpha:") < text.index("zeta:")
    again = LockFile(tmp_path / "pipeline.lock")
    assert again.entries == {"alpha": {"cmd": "a"}, "zeta": lock.get("zeta")}
    again.record("mid", {"cmd": "m"})
    assert list(yaml.safe_load((tmp_path / "pipeline.lock").read_text())["stages"]) == [
        "alpha", "mid", "zeta"]


def test_compare_values() -> None:
    assert compare_values({"a": 1, "b": {"c": 1, "d": 2}, "gone": 0},
                          {"a": 2, "b": {"c": 1, "e": 3}, "added": 1}) == {
        "a": "modified", "added": "new", "b.d": "deleted", "b.e": "new", "gone": "removed"}
    assert compare_values({"a": [1, 2]}, {"a": [1, 2]}) == {}


def test_python_api(three_stage: Project, monkeypatch) -> None:
    pipeline = Pipeline.load(three_stage.root)
    status = pipeline.status()
    assert [(r.name, r.state) for r in status.stages] == [
        ("prepare", "would run"), ("train", "would run"), ("evaluate", "would run")]
    assert status["prepare"].reasons == {"no lock entry": True}
    monkeypatch.chdir(three_stage.root)
    result = Pipeline.load().repro(["train"])
    assert result.ok and result.named("ran") == ["prepare", "train"]
    assert Pipeline.load().status(["evaluate"], single=True)["evaluate"].reasons == {"no lock entry": True}
    assert not Pipeline.load().status(["train"]).changed
    assert Pipeline.load().dag("dot").startswith("digraph")
    with pytest.raises(UserError, match="unknown stage 'nope'"):
        Pipeline.load().status(["nope"])


def test_one_pipeline_object_sees_changes_between_calls(three_stage: Project) -> None:
    pipeline = Pipeline.load(three_stage.root)
    assert pipeline.repro().ok
    assert not pipeline.status().changed
    three_stage.write("params.yaml", three_stage.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
    assert pipeline.status()["train"].reasons == {
        "changed params": {"params.yaml": {"train.lr": "modified"}}}
    assert pipeline.repro().named("ran") == ["train"]
    assert not pipeline.status().changed


def test_dag_ascii(project: Project) -> None:
    project.pipeline("""
        stages:
          a: {cmd: echo a > a, outs: [a]}
          b: {cmd: cat a > b, deps: [a], outs: [b]}
          c: {cmd: cat a > c, deps: [a], outs: [c]}
          d: {cmd: cat b c > d, deps: [b, c], outs: [d]}
    """)
    assert project.hpipe("dag").out == ("a\n├── b\n│   └── d\n└── c\n    └── d (see above)\n")
    dot = project.hpipe("dag", "--dot").out
    assert '"a" -> "b";' in dot and '"c" -> "d";' in dot


def test_init_writes_starters_and_never_overwrites(project: Project) -> None:
    project.write(".gitignore", "*.pyc")
    done = project.hpipe("init")
    assert "wrote pipeline.yaml" in done.out and "added .hpipe/ to .gitignore" in done.out
    assert project.read(".gitignore") == "*.pyc\n.hpipe/\n"
    assert "#" in project.read("pipeline.yaml")
    project.hpipe("repro")  # the starter pipeline runs as written
    project.write("params.yaml", "mine: 1\n")
    done = project.hpipe("init")
    assert "pipeline.yaml exists, left as it is" in done.out
    assert project.read("params.yaml") == "mine: 1\n"
    assert project.read(".gitignore").count(".hpipe/") == 1


@pytest.mark.parametrize("command", ["repro", "status"])
def test_noop_path_imports_neither_torch_nor_hangar(three_stage: Project, command: str) -> None:
    """Nor PyYAML, once the YAML files' parses are kept (.hpipe/parsed/: the lock the run wrote
    is parsed by the next command, once)."""
    three_stage.hpipe("repro")
    three_stage.hpipe("status")
    code = (f"import sys, runpy; sys.argv = ['hpipe', '{command}'];\n"
            "try: runpy.run_module('hangar_pipe.cli', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'hangar', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=three_stage.root, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().endswith("[]"), out
    assert "Everything is up to date." in out


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch) -> None:
    from hangar_pipe.core import atomic

    target = tmp_path / "pipeline.lock"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        atomic.atomic_write(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["pipeline.lock"], "temp file removed"


def test_atomic_write_keeps_permissions(tmp_path) -> None:
    from hangar_pipe.core import atomic

    new = tmp_path / "new.lock"
    atomic.atomic_write(new, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    new.chmod(0o640)
    atomic.atomic_write(new, b"y")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_bytes() == b"y"


def test_version_and_short_help(project: Project) -> None:
    from hangar_pipe import __version__

    assert project.hpipe("--version").out == f"hpipe {__version__}\n"
    assert "Say which stages would run and why" in project.hpipe("status", "-h").out
