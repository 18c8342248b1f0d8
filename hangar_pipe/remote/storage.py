"""The fsspec seam: one cache remote (a folder, `file://`, `s3://`, or any fsspec URL).

The remote mirrors the local cache:

    <url>/objects/<hash[:2]>/<hash[2:]>            content-addressed objects (`<hash>.dir`: folder manifests)
    <url>/runcache/<run key>/<xxh3 of the JSON>.json  one run-cache entry, immutable
    <url>/runs/<run id>.json                      one run-history record (`--history`), immutable

A put on a local-like filesystem writes under a hidden temporary name (`.tmp-*`, never listed)
and renames it into place; on an object store (S3 and the like) a PUT is atomic. Either way an
interrupted push leaves no object that looks complete, and pulls check every object's hash.
fsspec and s3fs are imported here only, inside functions: never on the no-op path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hangar_pipe.core.fingerprint import CHUNK, copy_hashed, hash_file
from hangar_pipe.core.objects import clone_or_copy
from hangar_pipe.errors import TransferError, UserError
from hangar_pipe.remote.config import RemoteConfig, check_url

OBJECTS, RUNCACHE, RUNS = "objects", "runcache", "runs"
# object stores: a PUT is atomic (a multipart upload is invisible until completed)
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"})
_S3_KEYS = {"access_key_id": "key", "secret_access_key": "secret", "session_token": "token",
            "profile": "profile"}
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


@dataclass
class Storage:
    """One remote location: its fsspec filesystem and the root path inside it."""

    name: str
    url: str
    _fs: Any  # fsspec.AbstractFileSystem; None for a folder until needed (fsspec takes 0.1 s to import)
    root: str
    local: bool  # a plain folder: write a temp file, then os.replace
    atomic_put: bool  # an object store: a PUT is all or nothing
    parallel: bool = True  # transfers wait on a network: many at once (a folder on a local disk: one)
    _made: set[str] = field(default_factory=set)  # folders known to exist
    _stale: list[str] = field(default_factory=list)  # a folder's temp files left by killed pushes, seen listing

    @property
    def fs(self) -> Any:
        if self._fs is None:
            from fsspec.implementations.local import LocalFileSystem

            self._fs = LocalFileSystem()
        return self._fs

    # -- paths -------------------------------------------------------------------------------

    def object_path(self, name: str) -> str:
        return f"{self.root}/{OBJECTS}/{name[:2]}/{name[2:]}"

    def entry_path(self, rel: str) -> str:
        return f"{self.root}/{RUNCACHE}/{rel}"

    # -- objects -----------------------------------------------------------------------------

    def list_objects(self) -> set[str]:
        """The names (`<hash>` or `<hash>.dir`) of every complete object: one listing."""
        return {prefix + rest for prefix, rest in self._list(OBJECTS, 2)}

    def put_object(self, src: Path | str, name: str, digest: str | None = None) -> bool:
        """Upload a local object; with `digest`, only if its bytes hash to it (checked on the way to
        a folder, before the upload elsewhere): False, with nothing written, if they do not."""
        if self.local:  # a plain folder: no fsspec per file
            return self._put(lambda path: _copy_checked(src, path, digest), self.object_path(name))
        if digest is not None and hash_file(src) != digest:
            return False
        return self._put(lambda path: self.fs.put_file(str(src), path), self.object_path(name))

    def get_object(self, name: str, dst: Path | str) -> tuple[int, str | None]:
        """Download an object to a local file (the caller checks it and renames it into place): its
        size, and its xxh3-128 where that was computed on the way (a folder remote), else None."""
        with self.errors():
            if self.local:
                return copy_hashed(self.object_path(name), dst)
            self.fs.get_file(self.object_path(name), str(dst))
            return os.path.getsize(dst), None

    # -- run-cache entries -------------------------------------------------------------------

    def list_entries(self) -> set[str]:
        """`<run key>/<hash>.json` of every run-cache entry."""
        return {f"{key}/{rest}" for key, rest in self._list(RUNCACHE, 2) if rest.endswith(".json")}

    def list_entries_of(self, key: str) -> set[str]:
        """The entries stored under one run key (`repro --pull`): one listing of its folder."""
        return {f"{key}/{rest}" for _, rest in self._list(f"{RUNCACHE}/{key}", 1) if rest.endswith(".json")}

    def put_entry(self, rel: str, data: bytes) -> None:
        self._put_bytes(self.entry_path(rel), data)

    def get_entry(self, rel: str) -> bytes:
        return self._get_bytes(self.entry_path(rel))

    # -- run-history records ------------------------------------------------------------------

    def list_runs(self) -> set[str]:
        """The run ids of every history record on the remote: one listing."""
        return {rest[:-5] for _, rest in self._list(RUNS, 1) if rest.endswith(".json")}

    def put_run(self, run_id: str, data: bytes) -> None:
        self._put_bytes(f"{self.root}/{RUNS}/{run_id}.json", data)

    def get_run(self, run_id: str) -> bytes:
        return self._get_bytes(f"{self.root}/{RUNS}/{run_id}.json")

    # -- internals ---------------------------------------------------------------------------

    def _list(self, sub: str, depth: int) -> list[tuple[str, str]]:
        """(first part, rest) of each file `depth` levels below `<root>/<sub>`, temp files left out."""
        top = f"{self.root}/{sub}"
        if self.local:
            with self.errors():
                return _scan(top, depth, self._stale)
        with self.errors():
            try:
                found = self.fs.find(top)
            except FileNotFoundError:  # no such folder or bucket yet: nothing there
                found = []
        pairs = []
        for path in found:
            parts = str(path)[len(top) + 1:].split("/")
            if len(parts) == depth and not any(p.startswith(".") or not p for p in parts):
                pairs.append((parts[0] if depth > 1 else "", parts[-1]))
        return pairs

    def remove_stale(self) -> int:
        """Remove the temp files killed pushes left in a folder remote (seen by the listings so
        far); how many."""
        removed = 0
        for path in self._stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        self._stale.clear()
        return removed

    def _put_bytes(self, path: str, data: bytes) -> None:
        self._put((lambda tmp: Path(tmp).write_bytes(data)) if self.local
                  else (lambda tmp: self.fs.pipe_file(tmp, data)), path)

    def _get_bytes(self, path: str) -> bytes:
        with self.errors():
            if self.local:
                return Path(path).read_bytes()
            data: bytes = self.fs.cat_file(path)
        return data

    def _put(self, write: Callable[[str], Any], path: str) -> bool:
        """Write a whole file or nothing: a PUT on an object store, else a temp name and a rename.
        `write` returning False means the bytes were wrong: nothing is kept, and False returned."""
        with self.errors():
            if self.atomic_put:
                return write(path) is not False
            folder, base = path.rsplit("/", 1)
            tmp = f"{folder}/.tmp-{base[:8]}-{os.urandom(8).hex()}"
            if folder not in self._made:  # (a set: adding from several threads is safe)
                os.makedirs(folder, exist_ok=True) if self.local else self.fs.makedirs(folder, exist_ok=True)
                self._made.add(folder)
            placed = False
            try:
                if write(tmp) is False:
                    return False
                if self.local:
                    os.chmod(tmp, 0o444)
                    os.replace(tmp, path)
                else:
                    self.fs.mv(tmp, path)
                placed = True
                return True
            finally:
                if not placed:
                    with contextlib.suppress(Exception):
                        os.unlink(tmp) if self.local else self.fs.rm_file(tmp)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """The remote's failures as one line: missing credentials and refusals are UserErrors
        (exit 2), a remote that cannot be reached or dies is a TransferError (exit 1). A full
        local disk is left to the caller (an OSError with a DISK_FULL errno)."""
        try:
            yield
        except (UserError, KeyboardInterrupt):
            raise
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise
            raise self._translate(exc) from None
        except Exception as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> UserError:
        kind = type(exc).__name__
        where = f"remote '{self.name}' ({self.url})"
        if kind in ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError"):
            return UserError(f"{where}: no credentials: set them with `hpipe remote modify {self.name}"
                             " access_key_id ...` and `... secret_access_key ...` (kept in hpipe.local.yaml),"
                             " a `profile`, or the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables")
        if isinstance(exc, PermissionError):
            return UserError(f"{where}: access denied ({_short(exc)})")
        if isinstance(exc, FileNotFoundError) and not self.local:
            return UserError(f"{where}: not found ({_short(exc)}); does the bucket exist?")
        return TransferError(f"{where}: {_short(exc)}; rerun the command to resume")


STALE_AFTER = 3600.0  # seconds: a temp file this old on a folder remote was left by a killed push


def _copy_checked(src: Path | str, dst: str, digest: str | None) -> bool:
    """Copy a local file, checking its bytes against `digest` when given: hashed on the way for a
    small file, first for a big one (then a reflink can still share its blocks)."""
    if digest is None:
        clone_or_copy(src, dst)
        return True
    if os.path.getsize(src) < CHUNK:
        return copy_hashed(src, dst)[1] == digest
    if hash_file(src) != digest:
        return False
    clone_or_copy(src, dst)
    return True


def _scan(top: str, depth: int, stale: list[str]) -> list[tuple[str, str]]:
    """`Storage._list` on a folder, by os.scandir: no stat per file, hidden (temp) names left out;
    temp files older than STALE_AFTER are added to `stale` (a push in progress writes fresh ones)."""
    old = time.time() - STALE_AFTER

    def entries(folder: str, files: bool) -> list[str]:
        try:
            with os.scandir(folder) as it:
                found = []
                for e in it:
                    if e.name.startswith(".tmp-") and files and e.stat(follow_symlinks=False).st_mtime < old:
                        stale.append(e.path)
                    elif not e.name.startswith(".") and (
                            e.is_file(follow_symlinks=False) if files else e.is_dir(follow_symlinks=False)):
                        found.append(e.name)
                return found
        except (FileNotFoundError, NotADirectoryError):  # nothing pushed there yet
            return []

    if depth == 1:
        return [("", name) for name in entries(top, True)]
    return [(sub, name) for sub in entries(top, False) for name in entries(f"{top}/{sub}", True)]


_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "gpfs",
               "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.juicefs")


def network_folder(folder: Path, mounts: str | None = None) -> bool:
    """Whether a folder lies on a network filesystem (NFS, SMB, sshfs, ...), by `mounts` (the text
    of /proc/mounts by default): its transfers then wait on the network, and many at once pay.
    False where that cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return False
    best, kind = "", ""
    path = str(folder)
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind in _NETWORK_FS


def _short(exc: BaseException) -> str:
    """An exception's message on one line, kept short."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def open_storage(cfg: RemoteConfig, root: Path) -> Storage:
    """The Storage of a configured remote; a one-line UserError for a malformed URL, an unknown
    protocol, a missing package (`s3://` without s3fs) or unusable settings."""
    try:
        protocol = check_url(cfg.url)
    except UserError as exc:
        raise UserError(f"remote '{cfg.name}': {exc.message}") from None
    if protocol == "file":
        return _local(cfg, root)
    fs = _s3(cfg) if protocol in ("s3", "s3a") else _other(cfg, protocol)
    path = str(fs._strip_protocol(cfg.url)).rstrip("/")
    return Storage(cfg.name, cfg.url, fs, path, local=False, atomic_put=protocol in _OBJECT_STORES)


def _local(cfg: RemoteConfig, root: Path) -> Storage:
    text = cfg.url[len("file://"):] if cfg.url.lower().startswith("file://") else cfg.url
    folder = (root / os.path.expanduser(text)).resolve()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"remote '{cfg.name}': {folder} is not a folder")
    near = next((p for p in (folder, *folder.parents) if p.exists()), folder)  # (may not exist yet)
    return Storage(cfg.name, cfg.url, None, folder.as_posix(), local=True, atomic_put=False,
                   parallel=network_folder(near))


def _s3(cfg: RemoteConfig) -> Any:
    try:
        import s3fs
    except ImportError:
        raise UserError(f"remote '{cfg.name}' is on S3 ({cfg.url}), which needs s3fs:"
                        ' pip install "hangar-pipe[s3]"') from None
    kwargs: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
    client: dict[str, Any] = {}
    config: dict[str, Any] = {"connect_timeout": 5, "retries": {"max_attempts": 2, "mode": "standard"}}
    for key, value in cfg.options.items():
        if key in _S3_KEYS:
            kwargs[_S3_KEYS[key]] = value
        elif key == "endpoint_url":
            client["endpoint_url"] = value
        elif key == "region":
            client["region_name"] = value
        else:
            known = ", ".join(sorted([*_S3_KEYS, "endpoint_url", "region"]))
            raise UserError(f"remote '{cfg.name}': unknown S3 setting '{key}' (known: {known})")
    fs = s3fs.S3FileSystem(client_kwargs=client, config_kwargs=config, **kwargs)
    fs.retries = 3  # s3fs's own retries (5 by default) on top of botocore's: a dead server answers in seconds
    return fs


def _other(cfg: RemoteConfig, protocol: str) -> Any:
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise UserError(f"remote '{cfg.name}': unknown protocol '{protocol}://' in {cfg.url}"
                        " (use a folder path, file://, s3://, or an fsspec protocol)") from None
    except ImportError as exc:
        raise UserError(f"remote '{cfg.name}' ({cfg.url}) needs a package: {_short(exc)}") from None
    try:
        return cls(**cfg.options)
    except Exception as exc:
        raise UserError(f"remote '{cfg.name}': cannot open {cfg.url}: {_short(exc)}") from None
