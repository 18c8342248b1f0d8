"""Issue 10: hostile YAML (alias bombs, non-UTF-8 bytes, duplicate params keys) and damaged state
(.hpipe's SQLite files, a folder manifest, the Hangar repository's lmdb files), end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import warnings
from pathlib import Path

import pytest
from conftest import Project, user_error

from hangar_pipe.core import sqlitefile
from hangar_pipe.core.history import History
from hangar_pipe.core.runcache import RunCache
from hangar_pipe.core.statcache import SqliteStatCache
from hangar_pipe.core.yamlfile import load_data, parse_yaml
from hangar_pipe.errors import UserError

STAGE = """
    stages:
      a:
        cmd: python -c "import pathlib; pathlib.Path('out.txt').write_text(pathlib.Path('in.txt').read_text())"
        deps: [in.txt]
        params: [lr]
        outs: [out.txt]
"""


def bomb(levels: int = 9) -> str:
    """The billion-laughs document: each level an anchored list of 9 aliases of the one before."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels + 1]
    lines = [f"{names[0]}: &{names[0]} [{','.join(['x'] * 9)}]"]
    lines += [f"{cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]" for prev, cur in zip(names, names[1:])]
    return "lr: 1\n" + "\n".join(lines) + "\n"


@pytest.fixture
def simple(project: Project) -> Project:
    project.write("in.txt", "1\n")
    project.write("params.yaml", "lr: 1\n")
    project.pipeline(STAGE)
    return project


# -- YAML alias bombs (item 4) ---------------------------------------------------------------


def test_the_alias_bomb_is_small_and_refused_quickly_in_every_reader(tmp_path: Path) -> None:
    text = bomb()
    assert len(text.encode()) < 400
    path = tmp_path / "params.yaml"
    path.write_text(text)
    t0 = time.monotonic()
    for read in (lambda: parse_yaml(text, "params.yaml"), lambda: load_data(path, "params.yaml")):
        with pytest.raises(UserError, match=r"^params\.yaml: too many YAML aliases \(alias bomb\?\)$"):
            read()
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("file", ["params.yaml", "pipeline.yaml", "pipeline.lock"])
def test_an_alias_bomb_is_one_line_naming_the_file(simple: Project, file: str) -> None:
    if file == "pipeline.yaml":
        simple.write(file, "stages: {}\n" + bomb())
    else:
        simple.write(file, ("schema: hpipe/1\nstages: {}\n" if file == "pipeline.lock" else "") + bomb())
    t0 = time.monotonic()
    line = user_error(simple.hpipe("status", check=None, timeout=60))
    assert time.monotonic() - t0 < 10
    assert line == f"hpipe: error: {file}: too many YAML aliases (alias bomb?)"


def test_ordinary_anchors_recursion_and_deep_nesting() -> None:
    doc = parse_yaml("base: &b {lr: 1, opt: [sgd]}\ntrain:\n  <<: *b\n  lr: 2\nother: *b\n", "p.yaml")
    assert doc.data["train"] == {"lr": 2, "opt": ["sgd"]} and doc.data["other"]["opt"] == ["sgd"]
    assert doc.line(("other", "opt")) == 5  # a path through an alias has the alias's line
    with pytest.raises(UserError, match=r"^p\.yaml:1: a YAML alias refers to its own node"):
        parse_yaml("stages: &s\n  a: *s\n", "p.yaml")
    deep = parse_yaml("x: " + "[" * 990 + "]" * 990 + "\n", "p.yaml")  # no RecursionError
    assert deep.line(("x",) + (0,) * 900) == 1


# -- bytes that are not UTF-8 (item 9) -------------------------------------------------------


@pytest.mark.parametrize("file", ["params.yaml", "pipeline.yaml", "pipeline.lock"])
def test_non_utf8_bytes_are_one_line_with_the_byte_offset(simple: Project, file: str) -> None:
    simple.hpipe("repro")
    good = (simple.root / file).read_bytes()
    (simple.root / file).write_bytes(good + b"note: caf\xe9\n")
    line = user_error(simple.hpipe("status", check=None))
    lines_before = good.count(b"\n")
    assert line == (f"hpipe: error: {file}:{lines_before + 1}: not UTF-8 text: byte 0xe9"
                    f" at offset {len(good) + 9}")


# -- duplicate keys in params.yaml (item 12) -------------------------------------------------


def test_duplicate_keys_in_params_yaml_are_refused_like_pipeline_yaml(simple: Project) -> None:
    simple.write("params.yaml", "lr: 1\ntrain:\n  epochs: 1\n  epochs: 2\n")
    assert user_error(simple.hpipe("status", check=None)) == \
        "hpipe: error: params.yaml:4: train: duplicate key 'epochs'"
    simple.write("params.yaml", "lr: 1\nlr: 2\n")
    assert user_error(simple.hpipe("repro", check=None)) == "hpipe: error: params.yaml:2: duplicate key 'lr'"


def test_duplicate_keys_with_a_merge_key_and_in_metrics(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("d: &d {a: 1}\nx:\n  <<: *d\n  a: 2\n")
    assert load_data(path)["x"] == {"a": 2}  # a merged key overridden is no duplicate
    path.write_text("d: &d {a: 1}\nx:\n  <<: *d\n  b: 2\n  b: 3\n")
    with pytest.raises(UserError, match="duplicate key 'b'"):
        load_data(path)
    path.write_text("acc: 0.5\nacc: 0.7\n")
    assert load_data(path, unique_keys=False) == {"acc": 0.7}  # metrics are read as they are


# -- damaged SQLite state in .hpipe (item 6) -------------------------------------------------


def damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(3000))
    else:  # truncated
        os.truncate(path, path.stat().st_size // 2)


def warnings_of(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("hpipe: warning:")]


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_stat_cache_is_rebuilt_with_a_warning(simple: Project, how: str) -> None:
    simple.hpipe("repro")
    damage(simple.root / ".hpipe/state.db", how)
    done = simple.hpipe("status")
    assert "Everything is up to date." in done.out
    [warning] = warnings_of(done.err)
    assert warning.startswith("hpipe: warning: the stat cache .hpipe/state.db was damaged (")
    assert warning.endswith("rebuilt it (files are hashed again)")
    assert warnings_of(simple.hpipe("status").err) == []  # rebuilt: no more warnings
    assert not list((simple.root / ".hpipe").glob("state.db.corrupt-*"))


def runs_with_history(project: Project) -> None:
    for value in ("1\n", "2\n", "3\n", "1\n"):  # the last is restored from the run cache
        project.write("in.txt", value)
        project.hpipe("repro")


@pytest.mark.parametrize("how", ["garbage", "truncated"])
@pytest.mark.parametrize("db", [".hpipe/runs.db", ".hpipe/cache/run-cache.db"])
def test_damaged_history_or_run_cache_is_moved_aside_and_commands_go_on(simple: Project, db: str,
                                                                         how: str) -> None:
    runs_with_history(simple)
    path = simple.root / db
    damage(path, how)
    damaged_bytes = path.read_bytes()
    simple.write("in.txt", "4\n")
    done = simple.hpipe("repro")
    assert simple.ran(done) == ["a"]
    [warning] = warnings_of(done.err)
    what = "run history" if db.endswith("runs.db") else "run cache"
    assert warning.startswith(f"hpipe: warning: the {what} {db} was damaged (")
    [aside] = path.parent.glob(path.name + ".corrupt-*")
    assert f"moved it aside to {aside.name} and started a new one" in warning
    assert aside.read_bytes() == damaged_bytes  # kept as it was, for a post-mortem
    for args in (("status",), ("runs", "--all"), ("runs", "--json"), ("gc",), ("repro",)):
        assert warnings_of(simple.hpipe(*args).err) == []
    assert len(json.loads(simple.hpipe("runs", "--json").out)) >= 1


@pytest.mark.parametrize("command", [("runs",), ("gc",)])
def test_runs_and_gc_go_on_over_damaged_databases(simple: Project, command: tuple[str, ...]) -> None:
    runs_with_history(simple)
    damage(simple.root / ".hpipe/runs.db", "garbage")
    damage(simple.root / ".hpipe/cache/run-cache.db", "garbage")
    done = simple.hpipe(*command)
    assert len(warnings_of(done.err)) == (1 if command == ("runs",) else 2)


def test_sqlite_file_unit(tmp_path: Path) -> None:
    path = tmp_path / ".hpipe" / "runs.db"
    path.parent.mkdir()
    path.write_bytes(b"not a database" * 300)
    said: list[str] = []
    history = History(path, said.append)
    assert history.latest() == []
    assert len(said) == 1 and ".hpipe/runs.db was damaged (file is not a database)" in said[0]
    aside = said[0].split("moved it aside to ")[1].split()[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["runs.db", aside]
    cache = RunCache(tmp_path / "run-cache.db", said.append)
    cache.path.write_bytes(b"\0" * 5000)
    cache.put("k", "run", {"outs": []})
    assert cache.candidates("k") == [("run", {"outs": []})] and len(said) == 2
    locked = sqlite3.OperationalError("database is locked")
    assert not sqlitefile.damaged(locked)  # not corruption: it propagates


def test_stat_cache_unit_rebuilds_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(os.urandom(4096))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = SqliteStatCache(path)
        st = os.stat(path)
        assert cache.get("x", st) is None
        cache.put("x", st, "abc")
        cache.close()
        assert SqliteStatCache(path).get("x", st) == "abc"
    assert [str(w.message).startswith(f"hpipe: the stat cache {path} was damaged") for w in caught] == [True]


# -- a garbage folder manifest (item 7) ------------------------------------------------------


def test_a_garbage_folder_manifest_warns_runs_the_stage_and_is_replaced(project: Project) -> None:
    project.write("in.txt", "1\n")
    project.pipeline("""
        stages:
          a:
            cmd: mkdir -p out && cp in.txt out/f.txt && echo 2 > out/g.txt
            deps: [in.txt]
            outs: [out]
    """)
    project.hpipe("repro")
    [manifest] = (project.root / ".hpipe/cache/objects").rglob("*.dir")
    good = manifest.read_bytes()
    manifest.chmod(0o644)
    manifest.write_bytes(b"\x00garbage{[")
    import shutil

    shutil.rmtree(project.root / "out")
    done = project.hpipe("repro")
    assert project.ran(done) == ["a"]
    [warning] = warnings_of(done.err)
    assert warning == f"hpipe: warning: cache object {manifest.parent.name}{manifest.name} is corrupted; removed, the stage runs"
    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["f.txt", "g.txt"]
    assert manifest.read_bytes() == good  # the bad object replaced
    shutil.rmtree(project.root / "out")
    done = project.hpipe("repro")  # and now it restores from it
    assert "restored" in done.out and warnings_of(done.err) == []


def test_a_garbage_manifest_is_replaced_by_the_next_save(project: Project) -> None:
    from hangar_pipe.core.fingerprint import fingerprint_path
    from hangar_pipe.core.objects import ObjectStore

    folder = project.root / "out"
    folder.mkdir()
    (folder / "f.txt").write_text("1")
    fp = fingerprint_path(str(folder))
    assert fp is not None
    rec = {"path": "out", "hash": fp.hash, "nfiles": 1}
    store = ObjectStore(project.root / "cache")
    store.save(folder, rec)
    target = store.path(fp.hash + ".dir")
    good = target.read_bytes()
    os.chmod(target, 0o644)
    target.write_bytes(b"[1, 2]")
    assert store.referenced([rec]) == set()  # gc keeps nothing of a damaged manifest
    store.save(folder, rec)
    assert target.read_bytes() == good


# -- a damaged Hangar repository (item 8) ----------------------------------------------------

@pytest.fixture
def hangar_project(project: Project) -> Project:
    from hangar_repo import READER, Repo, images, labels

    Repo(project.root).write("first", imgs=images(20), labels=labels(20))
    project.pipeline(READER)
    project.hpipe("repro")
    return project


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("file,how", [("ref.lmdb", "half"), ("ref.lmdb", "page"), ("hash.lmdb", "half"),
                                      ("hash.lmdb", "page"), ("branch.lmdb", "garbage")])
def test_a_damaged_hangar_repository_is_one_line_and_never_repaired(hangar_project: Project,
                                                                    file: str, how: str) -> None:
    path = hangar_project.root / ".hangar" / file
    if how == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    else:
        os.truncate(path, path.stat().st_size // 2 if how == "half" else 4096)
    before = snapshot(hangar_project.root / ".hangar")
    for args in (("status",), ("repro",), ("repro", "-f")):
        line = user_error(hangar_project.hpipe(*args, check=None))
        assert line.startswith(f"hpipe: error: {path}: the Hangar repository {hangar_project.root}"
                               " is damaged ("), line
        assert "hpipe never repairs it" in line
    assert snapshot(hangar_project.root / ".hangar") == before


def test_truncated_unit(tmp_path: Path) -> None:
    from hangar_pipe.hangar.store import truncated

    good = tmp_path / "good.lmdb"
    import lmdb

    env = lmdb.open(str(good), subdir=False)
    with env.begin(write=True) as txn:
        for i in range(200):
            txn.put(f"k{i}".encode(), os.urandom(300))
    env.close()
    assert truncated(good) is None
    assert truncated(tmp_path / "missing.lmdb") is None
    size = good.stat().st_size
    os.truncate(good, size - 4096)
    assert truncated(good) == f"truncated to {size - 4096} bytes of {size}"
    os.truncate(good, 10)
    assert truncated(good) == "truncated to 10 bytes"
