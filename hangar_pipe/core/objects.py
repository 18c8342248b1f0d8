"""The output cache: every recorded output file, stored once under `.hpipe/cache/objects/`.

Objects are content-addressed by xxh3-128 (`objects/<hash[:2]>/<hash[2:]>`) and read-only. A
folder output is stored as its files plus a manifest object `<folder hash>.dir`. Objects are
reflinks where the filesystem can make them (btrfs, XFS: copy-on-write, no data copied) and
plain copies otherwise, never hardlinks: editing a workspace file in place cannot change the
cache. The store works on output records with a `hash` (and `nfiles` for folders).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.fingerprint import folder_hash, hash_file, walk_files
from hangar_pipe.core.reporter import Reporter, SilentReporter
from hangar_pipe.errors import UserError

Record = dict[str, Any]


class ObjectStore:
    def __init__(self, folder: Path, reporter: Reporter | None = None) -> None:
        self.folder = folder / "objects"
        self._prefix = f"{self.folder}{os.sep}"
        self.reporter = reporter or SilentReporter()
        self._intact: set[str] = set()  # objects this process has checked (or written after a check)

    def mark_intact(self, name: str) -> None:
        """`name` was checked against its hash here (a pull): a restore need not hash it again."""
        self._intact.add(name)

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / digest[2:]

    def location(self, digest: str) -> str:
        """`path` as a string, for loops over many objects (no Path built)."""
        return f"{self._prefix}{digest[:2]}{os.sep}{digest[2:]}"

    def _add(self, src: Path, digest: str) -> None:
        import tempfile  # not needed on the no-op path

        target = self.path(digest)
        if _is_object(target):
            return  # (a link in its place is replaced below, never written through)
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

    def save(self, workspace: Path, rec: Record, stage: str = "") -> None:
        """Store a recorded output (file or folder) as it is in the workspace."""
        if "nfiles" not in rec:
            self._add(workspace, rec["hash"])
            return
        manifest = []
        files = walk_files(str(workspace))
        progress = Progress(self.reporter, stage, f"caching {workspace.name}", len(files))
        for rel, abs_path, _ in files:
            digest = hash_file(abs_path)
            self._add(Path(abs_path), digest)
            manifest.append([rel, digest])
            progress.advance()
        target, data = self.path(rec["hash"] + ".dir"), json.dumps(manifest).encode()
        if not _is_object(target) or target.read_bytes() != data:  # new, or a damaged one replaced
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data, mode=0o444)

    def read_manifest(self, path: Path | str) -> list[tuple[str, str]] | None:
        """A folder manifest's (relative path, file hash) pairs; None if missing or not a manifest."""
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read())
        except (FileNotFoundError, ValueError, RecursionError):  # missing, not UTF-8 or not JSON
            return None
        if not isinstance(data, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in data):
            return None
        return [(rel, digest) for rel, digest in data]

    def _discard(self, path: Path | str, digest: str) -> None:
        self.reporter.warning(f"cache object {digest} is corrupted; removed, the stage runs")
        _remove(Path(path))

    def _verified(self, digest: str, expected: str | None = None) -> str | None:
        """The object's path if it exists and is intact; a corrupted one is removed (and warned about).

        A file object must hash to its name; a folder manifest must rebuild its folder's hash. A
        symbolic link in an object's place is corrupt too: the link itself is removed, never followed.
        """
        path = self.location(digest)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else "not a file"
            self.reporter.warning(f"cache object {digest} is {what}; removed (never followed),"
                                  " the stage runs")
            _remove(Path(path))
            return None
        if digest in self._intact:
            return path
        if expected is None:
            intact = hash_file(path) == digest
        else:
            manifest = self.read_manifest(path)
            intact = manifest is not None and folder_hash(manifest) == expected
        if not intact:
            self._discard(path, digest)
            return None
        self._intact.add(digest)
        return path

    def referenced(self, recs: list[Record]) -> set[Path]:
        """The object files that the output records need (a folder: its manifest and files)."""
        return {self.path(name) for name in self.names(recs)}

    def names(self, recs: list[Record]) -> set[str]:
        """The object names (`<hash>`, `<hash>.dir`) that the output records need: a folder's
        manifest and files, when its manifest is here and readable."""
        names: set[str] = set()
        for rec in recs:
            if "hash" not in rec:  # not an output this store keeps
                continue
            if "nfiles" not in rec:
                names.add(rec["hash"])
                continue
            manifest_path = self.path(rec["hash"] + ".dir")
            if _is_object(manifest_path) and (manifest := self.read_manifest(manifest_path)) is not None:
                names.add(rec["hash"] + ".dir")  # (a damaged manifest is not kept)
                names.update(d for _, d in manifest)
        return names

    def collect(self, keep: set[Path], dry_run: bool) -> tuple[int, int]:
        """Remove every object not in keep, and every symbolic link (the link itself, never what it
        points to; rglob does not follow linked folders): (objects, bytes) removed (or that would be)."""
        count = size = 0
        if not self.folder.exists():
            return 0, 0
        for path in self.folder.rglob("*"):
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or (stat.S_ISREG(st.st_mode) and path not in keep):
                count += 1
                size += 0 if stat.S_ISLNK(st.st_mode) else st.st_size
                if not dry_run:
                    _remove(path)
        return count, size

    def can_restore(self, rec: Record) -> bool:
        """Whether every object is there (a link in an object's place counts: `restore` then warns
        about it and removes it; a linked manifest is never read)."""
        if "nfiles" not in rec:
            return os.path.lexists(self.path(rec["hash"]))
        path = self.path(rec["hash"] + ".dir")
        if not _is_object(path):
            return os.path.lexists(path)
        if (manifest := self.read_manifest(path)) is None:
            self._discard(path, rec["hash"] + ".dir")
            return False
        return all(os.path.lexists(self.path(d)) for _, d in manifest)

    def restore(self, workspace: Path, rec: Record, stage: str = "", root: Path | None = None) -> bool:
        """Put a recorded output back in the workspace from verified objects; False if it can't.
        With the project `root`, a target whose folder leads outside it (through a link) is refused."""
        if root is not None:
            _refuse_outside(root, workspace)
        if "nfiles" not in rec:
            src = self._verified(rec["hash"])
            if src is None:
                return False
            _place(workspace, lambda tmp: _copy_writable(src, tmp))
            return True
        manifest_path = self._verified(rec["hash"] + ".dir", expected=rec["hash"])
        if manifest_path is None:
            return False
        manifest = self.read_manifest(manifest_path) or []
        progress = Progress(self.reporter, stage, f"checking {workspace.name}", len(manifest))
        checked = []
        for rel, digest in manifest:  # every object is checked (and a corrupted one removed)
            checked.append((rel, self._verified(digest)))
            progress.advance()
        sources = [(rel, src) for rel, src in checked if src is not None]
        if len(sources) < len(checked):
            return False

        def build(tmp: Path) -> None:
            from hangar_pipe.core import workers  # (not on the no-op path)

            tmp.mkdir()
            made = {"."}

            def copy(item: tuple[str, str]) -> None:
                rel, src = item
                folder = os.path.dirname(rel) or "."
                if folder not in made:
                    os.makedirs(f"{tmp}/{folder}", exist_ok=True)
                    made.add(folder)
                _copy_writable(src, f"{tmp}/{rel}")

            if procs := workers.worth_forking(len(sources), min(8, os.cpu_count() or 1)):
                workers.run_forked(sources, copy, procs, lambda n: None)
            else:
                for item in sources:
                    copy(item)

        _place(workspace, build)
        return True


class Progress:
    """Reports `done of total` at most twice a second, and once at the end if it reported at all."""

    def __init__(self, reporter: Reporter, stage: str, what: str, total: int) -> None:
        self.reporter, self.stage, self.what, self.total = reporter, stage, what, total
        self.done, self.last, self.reported = 0, time.monotonic(), False

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.5 or (self.reported and self.done == self.total):
            self.reporter.progress(self.stage, self.what, self.done, self.total)
            self.last, self.reported = now, True


_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (copy-on-write)
_NO_REFLINK: set[tuple[int, int]] = set()  # (source, target) devices that cannot reflink: not asked again
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                          errno.EBADF, errno.EPERM})


def clone_or_copy(src: Path | str, dst: Path | str) -> int:
    """A reflink of src at dst where the filesystem supports it, else a copy inside the kernel
    (copy_file_range); the size. Each file is opened once, and a pair of filesystems that cannot
    reflink is not asked again. A full disk raises (never a half-written success)."""
    import fcntl

    with open(src, "rb") as fin, open(dst, "wb") as fout:
        sin, sout = os.fstat(fin.fileno()), os.fstat(fout.fileno())
        pair = (sin.st_dev, sout.st_dev)
        if pair not in _NO_REFLINK:
            try:
                fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
                return sin.st_size
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                _NO_REFLINK.add(pair)
        _copy_open(fin, fout)
        return sin.st_size


def _copy_open(fin: Any, fout: Any) -> None:
    """Copy an open file to another from their current positions: in the kernel where it can."""
    try:
        while os.copy_file_range(fin.fileno(), fout.fileno(), 1 << 30):
            pass
    except OSError as exc:  # an old kernel, or filesystems that cannot: copy through Python
        if exc.errno not in _UNSUPPORTED:
            raise
        for f in (fin, fout):  # (what the kernel copied moved the descriptors, not the buffers)
            f.seek(os.lseek(f.fileno(), 0, os.SEEK_CUR))
        import shutil  # (lazily: see cli/app.terminal_width)

        shutil.copyfileobj(fin, fout, 1 << 20)


def _copy_writable(src: Path | str, dst: Path | str) -> None:
    clone_or_copy(src, dst)
    os.chmod(dst, 0o644)


def _place(target: Path, build: Callable[[Path], None]) -> None:
    """Build the new file or folder beside `target`, then swap it in (the old one goes last). A
    link at `target` is replaced itself: nothing is written through it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.hpipe-restore-{os.getpid()}"
    old = target.parent / f".{target.name}.hpipe-old-{os.getpid()}"
    _remove(tmp)  # left by a killed run, or planted: never built into
    build(tmp)
    if target.is_symlink():
        target.unlink()
    if target.is_dir():
        _remove(old)
        target.rename(old)
        tmp.rename(target)
        _rmtree(old)
    else:
        os.replace(tmp, target)


def _is_object(path: Path) -> bool:
    """Whether a cache object is there as a plain file (lstat: a link is not one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _rmtree(path: Path) -> None:
    import shutil  # (lazily: see cli/app.terminal_width)

    shutil.rmtree(path)


def _remove(path: Path) -> None:
    """Remove a file, a link (itself) or a folder, if there is one. No chmod: unlinking needs only
    the folder's write permission, and a mode change could follow a link out of the project."""
    if path.is_dir() and not path.is_symlink():
        _rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _refuse_outside(root: Path, target: Path) -> None:
    """UserError when the folder a restore would write into is really outside the project."""
    real, top = os.path.realpath(target.parent), os.path.realpath(root)
    if os.path.commonpath([top, real]) != top:
        rel = os.path.relpath(target, root).replace(os.sep, "/")
        raise UserError(f"output '{rel}' is outside the project (its folder is {real}); not restored")
