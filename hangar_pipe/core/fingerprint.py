"""Content fingerprints of files and folders (xxh3-128), with a stat cache so unchanged files are never re-read."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

import xxhash

CHUNK = 1 << 22  # 4 MiB reads keep the hash at memory speed
RACY_WINDOW_NS = 2_000_000_000  # a file written this recently may change again within its mtime tick


class StatCache(Protocol):
    def get(self, path: str, st: os.stat_result) -> str | None: ...
    def put(self, path: str, st: os.stat_result, digest: str) -> None: ...


@dataclass(frozen=True)
class Fingerprint:
    """A file's or a folder's content: its xxhash, its size, and for a folder how many files."""

    hash: str
    size: int
    nfiles: int | None = None  # set for folders

    def record(self) -> dict[str, object]:
        rec: dict[str, object] = {"hash": self.hash, "size": self.size}
        if self.nfiles is not None:
            rec["nfiles"] = self.nfiles
        return rec


def hash_file(path: str | os.PathLike[str]) -> str:
    """xxh3-128 of a file's bytes: small files in one read, large ones in chunks into one buffer."""
    with open(path, "rb", buffering=0) as fh:
        first = fh.read(CHUNK)
        if len(first) < CHUNK:
            return xxhash.xxh3_128_hexdigest(first)
        h = xxhash.xxh3_128(first)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def copy_hashed(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> tuple[int, str]:
    """Copy a file, hashing its bytes on the way (one read, as `hash_file` would): (size, xxh3-128)."""
    h, size = xxhash.xxh3_128(), 0
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fin.readinto(buf):
            h.update(view[:n])
            done = 0
            while done < n:  # (a raw write may take part of it)
                done += fout.write(view[done:n])
            size += n
    return size, h.hexdigest()


def _cached_hash(path: str, st: os.stat_result, cache: StatCache | None) -> str:
    if cache is not None and (digest := cache.get(path, st)) is not None:
        return digest
    digest = hash_file(path)
    if cache is not None and st.st_mtime_ns < time.time_ns() - RACY_WINDOW_NS:
        cache.put(path, st, digest)
    return digest


def walk_files(top: str) -> list[tuple[str, str, os.stat_result]]:
    """(posix relative path, absolute path, stat) of every file below top, sorted."""
    found: list[tuple[str, str, os.stat_result]] = []
    stack = [("", top)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            for entry in it:
                rel = f"{rel_dir}{entry.name}"
                if entry.is_dir(follow_symlinks=False):  # no loops through linked folders
                    stack.append((rel + "/", entry.path))
                elif entry.is_file():
                    found.append((rel, entry.path, entry.stat()))
    found.sort(key=lambda item: item[0])
    return found


def folder_hash(manifest: list[tuple[str, str]]) -> str:
    """A folder's hash: xxh3-128 of its sorted `relative/path\0<file hash>\n` lines."""
    lines = "".join(f"{rel}\0{digest}\n" for rel, digest in manifest)
    return xxhash.xxh3_128_hexdigest(lines.encode())


def fingerprint_path(path: str, cache: StatCache | None = None) -> Fingerprint | None:
    """Fingerprint a file, or a folder as the hash of its sorted (path, hash) manifest; None if missing."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not os.path.isdir(path):
        return Fingerprint(_cached_hash(path, st, cache), st.st_size)
    files = walk_files(path)
    manifest = [(rel, _cached_hash(abs_path, fst, cache)) for rel, abs_path, fst in files]
    return Fingerprint(folder_hash(manifest), sum(fst.st_size for _, _, fst in files), len(files))
