"""The output cache and the run cache, under `.hpipe/cache/`.

- Objects: every recorded output file, stored once under `objects/<hash[:2]>/<hash[2:]>`
  (content-addressed by xxh3-128), read-only. A folder output is stored as its files plus a
  manifest object `<folder hash>.dir`. Objects are reflinks where the filesystem can make them
  (btrfs, XFS: copy-on-write, no data copied) and plain copies otherwise, never hardlinks:
  editing a workspace file in place cannot change the cache.
- Runs: `runs.db` maps a stage's run key (its definition, dep fingerprints, Hangar column
  fingerprints and params values) to the lock entry it produced and the run it came from.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import xxhash

from hangar_pipe.fingerprint import folder_hash, hash_file, walk_files
from hangar_pipe.state import atomic_write

Record = dict[str, Any]


class ObjectStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder / "objects"

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / digest[2:]

    def _add(self, src: Path, digest: str) -> None:
        target = self.path(digest)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            clone_or_copy(src, Path(tmp))
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def save(self, workspace: Path, rec: Record) -> None:
        """Store a recorded output (file or folder) as it is in the workspace."""
        if "nfiles" not in rec:
            self._add(workspace, rec["hash"])
            return
        manifest = []
        for rel, abs_path, _ in walk_files(str(workspace)):
            digest = hash_file(abs_path)
            self._add(Path(abs_path), digest)
            manifest.append([rel, digest])
        target = self.path(rec["hash"] + ".dir")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, json.dumps(manifest).encode())
            target.chmod(0o444)

    def _verified(self, digest: str, expected: str | None = None) -> Path | None:
        """The object's path if it exists and is intact; a corrupted one is removed (and warned about).

        A file object must hash to its name; a folder manifest must rebuild its folder's hash.
        """
        path = self.path(digest)
        if not path.exists():
            return None
        if expected is None:
            intact = hash_file(path) == digest
        else:
            intact = folder_hash(json.loads(path.read_bytes())) == expected
        if not intact:
            print(f"hpipe: warning: cache object {digest} is corrupted; removed, the stage runs",
                  file=sys.stderr)
            path.chmod(0o644)
            path.unlink()
            return None
        return path

    def referenced(self, recs: list[Record]) -> set[Path]:
        """The object files that the output records need (a folder: its manifest and files)."""
        paths: set[Path] = set()
        for rec in recs:
            if "nfiles" not in rec:
                paths.add(self.path(rec["hash"]))
                continue
            manifest = self.path(rec["hash"] + ".dir")
            paths.add(manifest)
            if manifest.exists():
                paths.update(self.path(d) for _, d in json.loads(manifest.read_bytes()))
        return paths

    def collect(self, keep: set[Path], dry_run: bool) -> tuple[int, int]:
        """Remove every object not in keep: (objects, bytes) removed (or that would be)."""
        count = size = 0
        if not self.folder.exists():
            return 0, 0
        for path in self.folder.rglob("*"):
            if path.is_file() and path not in keep:
                count += 1
                size += path.stat().st_size
                if not dry_run:
                    path.chmod(0o644)
                    path.unlink()
        return count, size

    def can_restore(self, rec: Record) -> bool:
        if "nfiles" not in rec:
            return self.path(rec["hash"]).exists()
        manifest = self.path(rec["hash"] + ".dir")
        return manifest.exists() and all(self.path(d).exists() for _, d in json.loads(manifest.read_bytes()))

    def restore(self, workspace: Path, rec: Record) -> bool:
        """Put a recorded output back in the workspace from verified objects; False if it can't."""
        if "nfiles" not in rec:
            src = self._verified(rec["hash"])
            if src is None:
                return False
            _place(workspace, lambda tmp: _copy_writable(src, tmp))
            return True
        manifest_path = self._verified(rec["hash"] + ".dir", expected=rec["hash"])
        if manifest_path is None:
            return False
        manifest = json.loads(manifest_path.read_bytes())
        sources = [(rel, self._verified(d)) for rel, d in manifest]
        if any(src is None for _, src in sources):
            return False

        def build(tmp: Path) -> None:
            tmp.mkdir()
            for rel, src in sources:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                _copy_writable(src, tmp / rel)  # type: ignore[arg-type]

        _place(workspace, build)
        return True


_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (copy-on-write)


def clone_or_copy(src: Path, dst: Path) -> None:
    """A reflink of src at dst where the filesystem supports it, else a copy."""
    import fcntl

    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        return
    except OSError:
        pass
    shutil.copyfile(src, dst)


def _copy_writable(src: Path, dst: Path) -> None:
    clone_or_copy(src, dst)
    os.chmod(dst, 0o644)


def _place(target: Path, build: Any) -> None:
    """Build the new file or folder beside `target`, then swap it in (the old one goes last)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.hpipe-restore-{os.getpid()}"
    old = target.parent / f".{target.name}.hpipe-old-{os.getpid()}"
    build(tmp)
    if target.is_dir() and not target.is_symlink():
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def run_key(definition: Record, deps: dict[str, Record | None], params: dict[str, Record]) -> str:
    """What determines a stage's result: definition, each dep's content fingerprint, params values.

    Sizes, commits and refs are left out: the same columns at another commit give the same key.
    """
    def essence(rec: Record | None) -> Any:
        if rec is None:
            return None
        if "columns" in rec:
            return {c: v.get("fingerprint") for c, v in rec["columns"].items()}
        return rec.get("hash")

    material = {"definition": definition, "deps": {k: essence(v) for k, v in sorted(deps.items())},
                "params": params}
    return xxhash.xxh3_128_hexdigest(json.dumps(material, sort_keys=True, default=str).encode())


class RunCache:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "runs.db"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT, created REAL, run_id TEXT, entry TEXT)")
        db.execute("CREATE INDEX IF NOT EXISTS runs_key ON runs (key)")
        return db

    def put(self, key: str, run_id: str, entry: Record) -> None:
        db = self._connect()
        try:
            with db:
                db.execute("DELETE FROM runs WHERE key = ? AND entry = ?", (key, json.dumps(entry)))
                db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                           (key, time.time(), run_id, json.dumps(entry)))
        finally:
            db.close()

    def all(self) -> list[tuple[str, str, Record]]:
        """(key, run id, entry) of every stored result."""
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            return [(k, r, json.loads(e)) for k, r, e in db.execute("SELECT key, run_id, entry FROM runs")]
        finally:
            db.close()

    def drop_runs_except(self, run_ids: set[str], dry_run: bool) -> int:
        """Forget results of runs not in run_ids; how many."""
        entries = self.all()
        doomed = [r for _, r, _ in entries if r not in run_ids]
        if doomed and not dry_run:
            db = self._connect()
            try:
                with db:
                    db.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in set(doomed)])
            finally:
                db.close()
        return len(doomed)

    def candidates(self, key: str) -> list[tuple[str, Record]]:
        """(run id, lock entry) results stored under a key, newest first."""
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            rows = db.execute("SELECT run_id, entry FROM runs WHERE key = ? ORDER BY created DESC",
                              (key,)).fetchall()
        finally:
            db.close()
        return [(run_id, json.loads(entry)) for run_id, entry in rows]
