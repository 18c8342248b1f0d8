"""The cache remote: `hpipe push`/`pull` through a local-folder remote and a real S3 API server
(moto_server), across two project folders; faults (corruption, interruption, full disk, bad
settings); concurrency; and the transfer functions in-process."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import ENV, HPIPE, Done, Project, user_error
from s3server import S3Server, free_port, s3_env, s3server  # noqa: F401 (a fixture)

from hangar_pipe.core.fingerprint import hash_file
from hangar_pipe.core.objects import ObjectStore
from hangar_pipe.core.reporter import SilentReporter
from hangar_pipe.core.runcache import RunCache
from hangar_pipe.errors import UserError
from hangar_pipe.remote import transfer
from hangar_pipe.remote.config import RemoteConfig
from hangar_pipe.remote.storage import open_storage

STEPS = """
import os, random, yaml
p = yaml.safe_load(open("params.yaml"))
os.makedirs("out", exist_ok=True)
for i in range(p["n"]):
    rnd = random.Random(f"{p['seed']}-{i}")
    open(f"out/f{i:04d}.bin", "wb").write(rnd.randbytes(p["fsize"]))
open("model.bin", "wb").write(random.Random(p["seed"]).randbytes(p["size"]))
"""
PIPELINE = """
stages:
  make:
    cmd: python steps.py
    deps: [steps.py]
    params: [seed, n, fsize, size]
    outs: [out, model.bin]
  note:
    cmd: python -c "open('note.txt', 'w').write('note')"
    deps: [steps.py]
    outs: [note.txt]
"""
SHARED = ["pipeline.yaml", "pipeline.lock", "params.yaml", "steps.py", "hpipe.yaml"]


def run(project: Project, *args: str, env: dict[str, str] | None = None, check: int | None = 0,
        **popen: object) -> Done:
    proc = subprocess.run([*HPIPE, *args], cwd=project.root, capture_output=True, text=True, timeout=120,
                          env=env or ENV, **popen)  # type: ignore[call-overload]
    done = Done(proc.returncode, proc.stdout, proc.stderr)
    if check is not None:
        assert done.code == check, f"exit {done.code} != {check}\n--- out\n{done.out}\n--- err\n{done.err}"
    return done


def make(project: Project, remote: str, *, n: int = 12, fsize: int = 200, size: int = 3000, seed: int = 1,
         extra: str = "") -> Project:
    """A project with a folder output (n files) and a file output, run once."""
    project.write("steps.py", STEPS)
    project.write("params.yaml", f"seed: {seed}\nn: {n}\nfsize: {fsize}\nsize: {size}\n")
    project.pipeline(PIPELINE)
    project.write("hpipe.yaml", f"remotes:\n  origin: {{url: '{remote}'{extra}}}\ndefault_remote: origin\n")
    run(project, "repro")
    return project


def clone(src: Project, dst: Path) -> Project:
    """What `git clone` gives: the committed files only, no .hpipe, no outputs."""
    dst.mkdir()
    for name in SHARED:
        shutil.copy2(src.root / name, dst / name)
    return Project(dst)


def same_outputs(a: Project, b: Project) -> None:
    for rel in ("model.bin", "note.txt"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    files = sorted(p.name for p in (a.root / "out").iterdir())
    assert files == sorted(p.name for p in (b.root / "out").iterdir())
    for name in files:
        assert (a.root / "out" / name).read_bytes() == (b.root / "out" / name).read_bytes()


def remote_objects(folder: Path) -> list[Path]:
    return [p for p in (folder / "objects").rglob("*") if p.is_file()]


def check_objects(files: list[Path], store: ObjectStore | None = None) -> None:
    """Every object that looks complete (a visible name) holds what its name says."""
    store = store or ObjectStore(Path("/nonexistent"))
    for path in files:
        if path.name.startswith("."):
            continue
        name = path.parent.name + path.name
        assert transfer.intact(store, path, name), f"{path} does not hold {name}"


# -- a local-folder remote -------------------------------------------------------------------

def test_folder_remote_round_trip(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "../remote")
    first = run(a, "push")
    assert first.out.strip() == "pushed 15 objects (6.0 kB) to 'origin'; 0 already there"
    assert run(a, "push").out.strip() == "everything is already in 'origin' (15 objects)"
    b = clone(a, tmp_path / "b")
    pulled = run(b, "pull")
    assert pulled.out.startswith("pulled 15 objects (6.0 kB) from 'origin'; 0 already here; restored")
    same_outputs(a, b)
    assert run(b, "pull").out.strip() == "everything is already here (15 objects)"
    assert "Everything is up to date." in run(b, "status").out
    assert run(b, "repro").out.strip().endswith("Everything is up to date.")
    check_objects(remote_objects(tmp_path / "remote"))


def test_only_missing_objects_move_and_stages_select(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), str(tmp_path / "remote"))  # an absolute path
    assert run(a, "push", "note").out.strip() == "pushed 1 object (4 B) to 'origin'; 0 already there"
    assert run(a, "push", "-j", "2").out.strip() == "pushed 14 objects (6.0 kB) to 'origin'; 1 already there"
    b = clone(a, tmp_path / "b")
    assert "restored note.txt" in run(b, "pull", "note").out
    assert not (b.root / "model.bin").exists()
    # a modified workspace output is left alone, with a warning
    (b.root / "model.bin").write_bytes(b"mine")
    done = run(b, "pull", "--json")
    assert "'model.bin' differs from pipeline.lock; left alone" in done.err
    assert (b.root / "model.bin").read_bytes() == b"mine"
    assert (b.root / "out" / "f0000.bin").read_bytes() == (a.root / "out" / "f0000.bin").read_bytes()


def test_corrupted_remote_object_is_detected_and_not_used(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "file://" + str(tmp_path / "remote"))
    run(a, "push")
    outs = yaml.safe_load((a.root / "pipeline.lock").read_text())["stages"]["make"]["outs"]
    digest = next(rec["hash"] for rec in outs if rec["path"] == "model.bin")
    obj = tmp_path / "remote" / "objects" / digest[:2] / digest[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"garbage")
    b = clone(a, tmp_path / "b")
    done = run(b, "pull", check=1)
    assert "Traceback" not in done.err
    assert f"object {digest} in remote 'origin' is corrupted" in done.err
    last = done.err.strip().splitlines()[-1]
    assert last.startswith("hpipe: error: 1 corrupted object(s) in remote 'origin' were not used:")
    assert f"{digest} (model.bin)" in last
    assert not (b.root / "model.bin").exists()  # never used
    assert not (b.root / ".hpipe/cache/objects" / digest[:2] / digest[2:]).exists()
    assert (b.root / "out").is_dir() and (b.root / "note.txt").exists()  # the rest was pulled
    assert [p for p in (b.root / ".hpipe/cache/objects").rglob(".*")] == []


def test_disk_full_on_pull_leaves_nothing_half_written(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "../remote", size=3_000_000)
    run(a, "push")
    b = clone(a, tmp_path / "b")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    done = run(b, "pull", "-j", "1", check=1, preexec_fn=small_files)
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.err, done.err
    assert lines[0].startswith("hpipe: error: disk full pulling into ") and "rerun to resume" in lines[0]
    objects = b.root / ".hpipe/cache/objects"
    assert [p for p in objects.rglob(".*")] == []  # no temp file left
    check_objects([p for p in objects.rglob("*") if p.is_file()])
    run(b, "pull")  # with room again it resumes
    same_outputs(a, b)


def test_killed_push_leaves_no_partial_object_and_resumes(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "../remote", n=300, fsize=20_000)
    objects = tmp_path / "remote" / "objects"
    proc = subprocess.Popen([*HPIPE, "push", "-j", "1"], cwd=a.root, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and len(remote_objects(tmp_path / "remote")) < 20:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = remote_objects(tmp_path / "remote")
    check_objects(left)
    visible = len([p for p in left if not p.name.startswith(".")])
    assert 0 < visible < 303, visible
    again = run(a, "push")
    assert again.out.strip().endswith(f"to 'origin'; {visible} already there")
    assert f"pushed {303 - visible} objects" in again.out
    check_objects(remote_objects(tmp_path / "remote"))
    b = clone(a, tmp_path / "b")
    run(b, "pull")
    same_outputs(a, b)
    assert objects.is_dir()
    # temp files of pushes killed over an hour ago are removed by the next push; fresh ones (a push
    # running now) stay
    folder = next(p for p in objects.iterdir() if p.is_dir())
    old, fresh = folder / ".tmp-0123abcd-old", folder / ".tmp-0123abcd-fresh"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    done = run(a, "push")
    assert done.out.strip().endswith("; removed 1 temp file an interrupted push left there"), done.out
    assert not old.exists() and fresh.exists()


def _processes_in(folder: Path) -> list[int]:
    """The pids of processes whose working folder is `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(folder):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_killing_a_push_with_worker_processes_stops_them_and_a_rerun_resumes(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "../remote", n=600, fsize=20_000)
    proc = subprocess.Popen([*HPIPE, "push", "-j", "2"], cwd=a.root, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and len(remote_objects(tmp_path / "remote")) < 40:
        time.sleep(0.01)
    workers = [pid for pid in _processes_in(a.root) if pid != proc.pid]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert workers, "the push had no worker processes"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid in _processes_in(a.root) for pid in workers):
        time.sleep(0.05)
    assert not [pid for pid in workers if pid in _processes_in(a.root)]  # they stopped, orphaned
    check_objects(remote_objects(tmp_path / "remote"))  # no partial object looks complete
    again = run(a, "push")
    assert "pushed" in again.out and "603 objects" not in again.out.split(";")[0], again.out
    b = clone(a, tmp_path / "b")
    assert "restored" in run(b, "pull").out
    same_outputs(a, b)


def test_concurrent_pushes_leave_a_consistent_remote(tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    a = make(Project(tmp_path / "a"), remote, n=150)
    c = make(Project(tmp_path / "c"), remote, n=150, seed=2)  # different objects, and note.txt shared
    procs = [p.popen("push", "-j", "4") for p in (a, a, c)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    check_objects(remote_objects(tmp_path / "remote"))
    for src, name in ((a, "a2"), (c, "c2")):
        copy = clone(src, tmp_path / name)
        run(copy, "pull")
        same_outputs(src, copy)


def test_bad_remote_settings_are_one_line(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "../remote")
    assert "unknown remote 'orign' (did you mean 'origin'?)" in user_error(run(a, "push", "-r", "orign", check=2))
    a.write("hpipe.yaml", "remotes:\n  origin: {url: 'nosuch://bucket/x'}\n")
    assert "unknown protocol 'nosuch://'" in user_error(run(a, "pull", check=2))
    a.write("hpipe.yaml", "remotes:\n  origin: {url: 's3:/bucket'}\n")
    assert "malformed remote URL 's3:/bucket'" in user_error(run(a, "push", check=2))
    a.write("hpipe.yaml", "remotes:\n  origin: {url: 's3://bucket/x'}\n")
    fake = tmp_path / "nos3fs"
    (fake / "s3fs").mkdir(parents=True)
    (fake / "s3fs" / "__init__.py").write_text("raise ImportError('no s3fs here')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path])}
    assert 'pip install "hangar-pipe[s3]"' in user_error(run(a, "push", env=env, check=2))


def test_no_op_commands_do_not_import_fsspec(tmp_path: Path) -> None:
    a = make(Project(tmp_path / "a"), "../remote")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "hangar_pipe.cli", "status"], cwd=a.root,
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0
    assert "fsspec" not in proc.stderr and "s3fs" not in proc.stderr


# -- S3 (a real moto_server) -----------------------------------------------------------------

def test_s3_round_trip_with_run_cache(tmp_path: Path, s3server: S3Server) -> None:  # noqa: F811
    env = s3_env(ENV)
    bucket = s3server.bucket("round-trip")
    a = make(Project(tmp_path / "a"), f"s3://{bucket}/proj", extra=f", endpoint_url: '{s3server.endpoint}'")
    a.write("params.yaml", "seed: 2\nn: 12\nfsize: 200\nsize: 3000\n")
    run(a, "repro")  # a second result in the run cache
    first = run(a, "push", "--run-cache", env=env)
    assert first.out.strip().startswith("pushed 29 objects") and "and 3 run-cache entries to 'origin'" in first.out
    assert run(a, "push", "--run-cache", env=env).out.strip() == \
        "everything is already in 'origin' (29 objects, 3 run-cache entries)"
    b = clone(a, tmp_path / "b")
    run(b, "pull", "--run-cache", env=env)
    same_outputs(a, b)
    b.write("params.yaml", "seed: 1\nn: 12\nfsize: 200\nsize: 3000\n")  # A's first run: restored, not run
    done = run(b, "repro")
    assert [line.split()[1] for line in done.out.splitlines() if line.startswith("↺")] == ["make:"], done.out


def test_s3_missing_credentials_and_dead_server(tmp_path: Path, s3server: S3Server) -> None:  # noqa: F811
    bucket = s3server.bucket("faults")
    a = make(Project(tmp_path / "a"), f"s3://{bucket}/p", extra=f", endpoint_url: '{s3server.endpoint}'")
    empty = tmp_path / "home"
    empty.mkdir()
    env = {k: v for k, v in s3_env(ENV).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(HOME=str(empty), AWS_CONFIG_FILE=str(empty / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(empty / "credentials"))
    line = user_error(run(a, "push", env=env, check=2))
    assert "remote 'origin'" in line and "no credentials" in line and "hpipe.local.yaml" in line
    dead = f"http://127.0.0.1:{free_port()}"
    a.write("hpipe.yaml", f"remotes:\n  origin: {{url: 's3://{bucket}/p', endpoint_url: '{dead}'}}\n")
    done = run(a, "push", env=s3_env(ENV), check=1)
    assert len(done.err.strip().splitlines()) == 1 and "Traceback" not in done.err
    assert "remote 'origin'" in done.err and "rerun the command to resume" in done.err


def test_s3_server_dying_mid_push_is_one_line_and_a_rerun_resumes(tmp_path: Path) -> None:
    server = S3Server(free_port())
    server.start()
    try:
        bucket = server.bucket("dying")
        a = make(Project(tmp_path / "a"), f"s3://{bucket}/p", n=120, fsize=2000,
                 extra=f", endpoint_url: '{server.endpoint}'")
        proc = subprocess.Popen([*HPIPE, "push", "-j", "2"], cwd=a.root, env=s3_env(ENV),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and _s3_count(server, bucket) < 10:
            time.sleep(0.02)
        server.stop()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "remote 'origin'" in err and "rerun the command to resume" in err
        server.start()  # a fresh (empty) server on the same port: the rerun pushes everything
        server.bucket(bucket)
        assert "pushed 123 objects" in run(a, "push", env=s3_env(ENV)).out
    finally:
        server.stop()


def _s3_count(server: S3Server, bucket: str) -> int:
    try:
        with urllib.request.urlopen(f"{server.endpoint}/{bucket}?list-type=2", timeout=2) as resp:
            return resp.read().decode().count("<Key>")
    except OSError:
        return 0


# -- the transfer functions, in-process ------------------------------------------------------

def _store_with(tmp: Path, blobs: list[bytes]) -> tuple[ObjectStore, list[str]]:
    store = ObjectStore(tmp / "cache")
    names = []
    for i, blob in enumerate(blobs):
        src = tmp / f"src{i}"
        src.write_bytes(blob)
        names.append(hash_file(src))
        store._add(src, names[-1])
    return store, names


def test_transfer_unit_push_then_fetch(tmp_path: Path) -> None:
    store, names = _store_with(tmp_path, [b"one", b"two", b"three"])
    storage = open_storage(RemoteConfig("r", "remote"), tmp_path)
    stats = transfer.TransferStats("r")
    transfer.push_objects(store, storage, names[:2], jobs=2, reporter=SilentReporter(), stats=stats)
    assert (stats.moved, stats.bytes, stats.present) == (2, 6, 0)
    (tmp_path / "remote/objects/zz").mkdir()
    (tmp_path / "remote/objects/zz/.tmp-partial").write_bytes(b"half")  # an interrupted put: never listed
    assert storage.list_objects() == set(names[:2])
    stats = transfer.TransferStats("r")
    transfer.push_objects(store, storage, [*names, "f" * 32], jobs=2, reporter=SilentReporter(), stats=stats)
    assert (stats.moved, stats.present, stats.absent) == (1, 2, ["f" * 32])

    fresh = ObjectStore(tmp_path / "fresh")
    stats = transfer.TransferStats("r")
    transfer.fetch_objects(fresh, storage, names, jobs=3, reporter=SilentReporter(), stats=stats,
                           have=storage.list_objects())
    assert stats.moved == 3 and all(fresh.path(n).read_bytes() for n in names)
    assert oct(fresh.path(names[0]).stat().st_mode & 0o777) == "0o444"


def test_transfer_unit_corrupted_object_is_not_placed(tmp_path: Path) -> None:
    store, names = _store_with(tmp_path, [b"good", b"soon bad"])
    storage = open_storage(RemoteConfig("r", "file://" + str(tmp_path / "remote")), tmp_path)
    transfer.push_objects(store, storage, names, jobs=2, reporter=SilentReporter(),
                          stats=transfer.TransferStats("r"))
    bad = Path(storage.object_path(names[1]))
    bad.chmod(0o644)
    bad.write_bytes(b"changed")
    fresh, stats = ObjectStore(tmp_path / "fresh"), transfer.TransferStats("r")
    with pytest.warns(RuntimeWarning, match=f"object {names[1]} in remote 'r' is corrupted"):
        transfer.fetch_objects(fresh, storage, names, jobs=2, reporter=SilentReporter(), stats=stats,
                               have=storage.list_objects(), labels={names[1]: "model.pt"})
    assert stats.moved == 1 and stats.corrupted == [f"{names[1]} (model.pt)"]
    assert not fresh.path(names[1]).exists() and list(fresh.folder.rglob(".*")) == []
    with pytest.raises(UserError, match="1 corrupted object"):
        stats.check()


def test_transfer_unit_run_cache_entries_round_trip(tmp_path: Path) -> None:
    storage = open_storage(RemoteConfig("r", str(tmp_path / "remote")), tmp_path)
    here = RunCache(tmp_path / "here.db")
    key = "a" * 32
    here.put(key, "run-1", {"outs": [{"path": "m", "hash": "b" * 32, "size": 1}]})
    here.put(key, "run-2", {"outs": []})
    stats = transfer.TransferStats("r")
    recs = transfer.push_entries(here, storage, jobs=2, reporter=SilentReporter(), stats=stats)
    assert stats.entries == 2 and recs == [{"path": "m", "hash": "b" * 32, "size": 1}]
    there = RunCache(tmp_path / "there.db")
    stats = transfer.TransferStats("r")
    new = transfer.pull_entries(there, storage, storage.list_entries(), jobs=2, reporter=SilentReporter(),
                                stats=stats)
    assert sorted(r for r, _ in new) == ["run-1", "run-2"]
    assert sorted(there.rows()) == sorted(here.rows())  # `created` too: a second pull moves nothing
    stats = transfer.TransferStats("r")
    assert transfer.pull_entries(there, storage, storage.list_entries_of(key), jobs=2,
                                 reporter=SilentReporter(), stats=stats) == []
    assert stats.entries_present == 2


def test_storage_rejects_bad_urls(tmp_path: Path) -> None:
    for url, words in (("nosuch://x/y", "unknown protocol"), ("s3://", "malformed remote URL")):
        with pytest.raises(UserError, match=words):
            open_storage(RemoteConfig("r", url), tmp_path)
    with pytest.raises(UserError, match="unknown S3 setting 'colour'"):
        open_storage(RemoteConfig("r", "s3://b/p", {"colour": "red"}), tmp_path)


def test_remote_fetcher_brings_entries_and_objects_on_demand(tmp_path: Path) -> None:
    from hangar_pipe import Pipeline

    a = make(Project(tmp_path / "a"), "../remote")
    run(a, "push", "--run-cache")
    b = clone(a, tmp_path / "b")
    fetcher = Pipeline.load(b.root).remote_fetcher()
    key, _, run_id, entry = RunCache(a.root / ".hpipe/cache/run-cache.db").rows()[0]
    assert fetcher.entries(key) == [(run_id, entry)]
    assert fetcher.entries(key) == []  # now in the local run cache
    assert fetcher.objects(entry["outs"])
    assert all(fetcher.store.can_restore(r) for r in entry["outs"])


def test_a_push_that_fails_half_way_leaves_no_manifest_without_its_files(tmp_path: Path) -> None:
    """A folder's manifest is uploaded after its files: a push stopped by an error on one file
    leaves no manifest, so the folder never looks complete on the remote."""
    a = make(Project(tmp_path / "a"), str(tmp_path / "remote"))
    store = ObjectStore(a.root / ".hpipe" / "cache")
    manifest = next(p for p in store.folder.rglob("*.dir"))
    last = max(digest for _, digest in store.read_manifest(manifest) or [])
    assert last > manifest.parent.name + manifest.name  # (in name order it would go after the manifest)
    blocker = tmp_path / "remote" / "objects" / last[:2]
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where a folder of objects goes")
    done = run(a, "push", "--no-data", check=None)
    assert done.code != 0 and "Traceback" not in done.err
    assert not list((tmp_path / "remote" / "objects").rglob("*.dir"))
    blocker.unlink()
    run(a, "push")
    b = clone(a, tmp_path / "b")
    run(b, "pull")
    same_outputs(a, b)
