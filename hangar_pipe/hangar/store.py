"""Read a Hangar repository's records directly (lmdb + blosc), without importing hangar or torch.

What Hangar 0.5.2 keeps, and what we read (see shared notes, hangar.md §2):
- `branch.lmdb`: `head` -> `branch:<name>`; `branch:<name>` -> commit digest; `writerlock:` -> a
  writer's uuid, or `LOCK_AVAILABLE`.
- `ref.lmdb`: `<commit>` -> parent digest(s) (`a << b` for a merge); `<commit>:spec` -> blosc'd JSON
  (time, message, user); `<commit>:ref` -> blosc'd, `$`-joined, sorted records of the whole
  commit: `f:<col>:<key> 0=<data digest>` (flat), `n:<col>:<sample>:<sub> 0=<digest>` (nested),
  `s:<col>:<f|n> 1=<schema digest>`.
- `hash.lmdb`: `s:<schema digest>` -> repr of the schema dict (layout, type, shape, dtype, backend).

A column's fingerprint hashes its semantic schema (no backend or compression options) and its
sorted (key -> data digest) records, so it changes exactly when its data or schema does. This
depends on Hangar's on-disk format, which is why hangar is pinned to 0.5.2.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from hangar_pipe.errors import UserError
from hangar_pipe.hangar import is_repository
from hangar_pipe.hangar.record_diff import by_key, sample_counts

if TYPE_CHECKING:
    from hangar_pipe.hangar.fingerprints import FingerprintCache

SEMANTIC_SCHEMA_KEYS = ("column_layout", "column_type", "schema_type", "shape", "dtype",
                        "data_hasher_tcode")
_LMDB_OPTIONS = {"readonly": True, "lock": False, "subdir": False, "max_spare_txns": 4,
                 "map_size": 50_000_000_000}
_LOCK_FREE = b"LOCK_AVAILABLE"


@dataclass(frozen=True)
class ColumnState:
    """A column at a commit: its fingerprint, sample count and semantic schema."""

    fingerprint: str
    samples: int
    schema: dict[str, Any]


_META_MAGIC = 0xBEEFC0DE  # lmdb's meta pages: page 0 and 1, the one with the higher txnid is current


def truncated(file: Path) -> str | None:
    """Why an lmdb data file is shorter than its current meta page says (lmdb would map pages past
    its end, and reading them kills the process with SIGBUS), or None."""
    import struct

    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(152)
            if len(head) < 152 or struct.unpack_from("<I", head, 16)[0] != _META_MAGIC:
                return None if len(head) == 152 else f"truncated to {size} bytes"  # lmdb says the rest
            psize = struct.unpack_from("<I", head, 40)[0]
            fh.seek(psize)
            second = fh.read(152)
    except FileNotFoundError:
        return None
    if len(second) < 152:
        return f"truncated to {size} bytes"
    metas = [struct.unpack_from("<QQ", page, 136) for page in (head, second)
             if struct.unpack_from("<I", page, 16)[0] == _META_MAGIC]
    last_page, _ = max(metas, key=lambda meta: meta[1])
    need = (last_page + 1) * psize
    return f"truncated to {size} bytes of {need}" if size < need else None


def short(commit: str) -> str:
    """`a=39a3b2c1…` for messages."""
    return commit[:10] + "…" if len(commit) > 10 else commit


class HangarStore:
    """Read-only view of the records of the Hangar repository in `path` (the folder holding .hangar)."""

    def __init__(self, path: Path, fingerprints: FingerprintCache | None = None) -> None:
        self.path = path
        self.fingerprints = fingerprints  # column states by (commit, column), kept across runs
        self._checked = False  # whether the lmdb files were checked for truncation (cache hits)
        self.dir = path / ".hangar"
        if not is_repository(path):
            raise FileNotFoundError(f"no Hangar repository in {path}")
        self._envs: dict[str, Any] = {}
        self._flat: dict[str, bytes] = {}
        self._schemas: dict[bytes, dict[str, Any]] = {}

    def _env(self, db: str) -> Any:
        if db not in self._envs:
            import lmdb

            file = self.dir / f"{db}.lmdb"
            if problem := truncated(file):  # mapping it would crash the process (SIGBUS)
                raise self.damaged(db, problem)
            try:
                self._envs[db] = lmdb.open(str(file), **_LMDB_OPTIONS)
            except lmdb.Error as exc:
                raise self.damaged(db, exc) from None
        return self._envs[db]

    def damaged(self, db: str, why: object) -> UserError:
        """One line: this lmdb file of the repository is damaged; hpipe reads, never repairs."""
        file = str(self.dir / f"{db}.lmdb")
        reason = str(why).replace(f"{file}: ", "")
        return UserError(f"the Hangar repository {self.path} is damaged ({reason}); hpipe never"
                         " repairs it: restore its .hangar folder from a backup or a clone", file=file)

    def _get(self, db: str, key: bytes) -> bytes | None:
        import lmdb

        try:
            with self._env(db).begin() as txn:
                value = txn.get(key)
                return None if value is None else bytes(value)
        except lmdb.Error as exc:
            raise self.damaged(db, exc) from None

    def _scan(self, db: str, prefix: bytes) -> list[tuple[bytes, bytes]]:
        import lmdb

        try:
            with self._env(db).begin() as txn:
                cursor = txn.cursor()
                found = []
                if cursor.set_range(prefix):
                    for key, value in cursor:
                        if not key.startswith(prefix):
                            break
                        found.append((bytes(key), bytes(value)))
                return found
        except lmdb.Error as exc:
            raise self.damaged(db, exc) from None

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    # -- refs ----------------------------------------------------------------------------------

    def _text(self, db: str, raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise self.damaged(db, f"a record is not text: {raw[:20]!r}") from None

    def head_branch(self) -> str:
        head = self._text("branch", self._get("branch", b"head") or b"branch:master")
        if not head.startswith("branch:"):
            raise self.damaged("branch", f"HEAD is {head[:40]!r}, not a branch")
        return head[len("branch:"):]

    def branches(self) -> dict[str, str]:
        return {self._text("branch", k)[len("branch:"):]: self._text("branch", v)
                for k, v in self._scan("branch", b"branch:")}

    def has_commit(self, commit: str) -> bool:
        return self._get("ref", commit.encode()) is not None

    def resolve(self, ref: str | None) -> tuple[str, str]:
        """(ref name, full commit digest) for a branch, a full or short digest, or None (HEAD branch)."""
        name = ref or self.head_branch()
        branches = self.branches()
        if name in branches:
            if not branches[name]:
                raise UserError(f"branch '{name}' of the Hangar repository {self.path} has no commits")
            return name, branches[name]
        digest = name if name.startswith("a=") else f"a={name}"
        if self.has_commit(digest):
            return name, digest
        matches = [k.decode() for k, _ in self._scan("ref", digest.encode()) if b":" not in k]
        if len(matches) == 1 and len(digest) >= 6:
            return name, matches[0]
        if len(matches) > 1:
            raise UserError(f"'{name}' matches several commits: {', '.join(short(m) for m in matches[:5])}")
        raise self.unknown_ref(name)

    def unknown_ref(self, ref: str) -> UserError:
        recent = "; ".join(f"{c} {msg!r}" for c, msg in self.recent(5)) or "none"
        return UserError(f"unknown ref '{ref}' in the Hangar repository {self.path}; branches: "
                         f"{', '.join(sorted(self.branches())) or 'none'}; recent commits: {recent}")

    def parents(self, commit: str) -> list[str]:
        raw = self._get("ref", commit.encode())
        return [p for p in (raw or b"").decode().split(" << ") if p]

    def commit_info(self, commit: str) -> dict[str, Any]:
        from hangar_pipe.hangar.compat import blosc_decompress

        raw = self._get("ref", f"{commit}:spec".encode())
        return json.loads(blosc_decompress()(raw)) if raw else {}

    def recent(self, n: int = 10) -> list[tuple[str, str]]:
        """(commit, message) of the n newest commits reachable from any branch."""
        seen: dict[str, float] = {}
        todo = [c for c in self.branches().values() if c]
        messages = {}
        while todo:
            commit = todo.pop()
            if commit in seen:
                continue
            info = self.commit_info(commit)
            seen[commit] = info.get("commit_time", 0.0)
            messages[commit] = info.get("commit_message", "")
            todo.extend(self.parents(commit))
        newest = sorted(seen, key=seen.__getitem__, reverse=True)[:n]
        return [(c, messages[c]) for c in newest]

    def writer_lock(self) -> str | None:
        """The uuid of the writer holding the lock, or None when it is free."""
        value = self._get("branch", b"writerlock:")
        return None if value in (None, _LOCK_FREE) else value.decode()

    # -- columns -------------------------------------------------------------------------------

    def flat(self, commit: str) -> bytes:
        """A commit's records, decompressed: sorted, `$`-joined (cached: a commit never changes)."""
        if commit not in self._flat:
            from hangar_pipe.hangar.compat import blosc_decompress

            raw = self._get("ref", f"{commit}:ref".encode())
            if raw is None:
                raise UserError(f"commit {commit} not found in the Hangar repository {self.path}")
            self._flat[commit] = blosc_decompress()(raw)
        return self._flat[commit]

    def _run(self, commit: str, prefix: bytes) -> bytes:
        """The `$`-joined records whose keys start with prefix: one contiguous run, found by search."""
        flat = self.flat(commit)
        if flat.startswith(prefix):
            start = 0
        else:
            start = flat.find(b"$" + prefix) + 1
            if start == 0:
                return b""
        last = flat.rfind(b"$" + prefix) + 1
        end = flat.find(b"$", max(start, last))
        return flat[start:end if end >= 0 else len(flat)]

    def column_names(self, commit: str) -> list[str]:
        run = self._run(commit, b"s:")
        return sorted(r.split(b" ", 1)[0].decode()[2:].rsplit(":", 1)[0]
                      for r in run.split(b"$")) if run else []

    def _schema(self, digest: bytes) -> dict[str, Any]:
        if digest not in self._schemas:
            raw = self._get("hash", b"s:" + digest)
            spec = ast.literal_eval(raw.decode()) if raw else {}
            self._schemas[digest] = {k: spec.get(k) for k in SEMANTIC_SCHEMA_KEYS}
        return self._schemas[digest]

    def column(self, commit: str, name: str) -> ColumnState | None:
        """A column's fingerprint at a commit, from its records alone; None if it is not there."""
        if self.fingerprints is None:
            return self._column(commit, name)
        state = self.fingerprints.get(commit, name)
        if state is not None and not self._checked:  # the records are not read: still see damage
            self._checked = True
            for db in ("ref", "hash"):
                if problem := truncated(self.dir / f"{db}.lmdb"):
                    raise self.damaged(db, problem)
        if state is None:
            state = self._column(commit, name)
            if state is not None:
                self.fingerprints.put(commit, name, state)
        return state

    def _column(self, commit: str, name: str) -> ColumnState | None:
        schema_rec = self._run(commit, f"s:{name}:".encode())
        if not schema_rec:
            return None
        key, digest = schema_rec.split(b" ", 1)
        layout = key[-1:]  # b"f" flat, b"n" nested
        schema = self._schema(digest)
        data = self._run(commit, layout + f":{name}:".encode())
        h = xxhash.xxh3_128(repr(sorted(schema.items(), key=lambda kv: kv[0])).encode())
        h.update(b"\0")
        h.update(data)
        if not data:
            samples = 0
        elif layout == b"n":
            samples = len({r.split(b" ", 1)[0].rsplit(b":", 1)[0] for r in data.split(b"$")})
        else:
            samples = data.count(b"$") + 1
        return ColumnState(h.hexdigest(), samples, schema)

    def samples(self, commit: str, name: str) -> dict[bytes, bytes]:
        """A column's (sample key -> data digest) mapping at a commit."""
        runs = [self._run(commit, f"{layout}:{name}:".encode()) for layout in ("f", "n")]
        return by_key(runs, len(name.encode()) + 3)

    def column_records(self, commit: str, name: str) -> tuple[dict[str, Any], bytes] | None:
        """A column's semantic schema and its data records (the run of the layout its schema
        names, as `column()` hashes) at a commit, or None if it is not there."""
        schema_rec = self._run(commit, f"s:{name}:".encode())
        if not schema_rec:
            return None
        key, digest = schema_rec.split(b" ", 1)
        return self._schema(digest), self._run(commit, key[-1:] + f":{name}:".encode())

    def data_specs(self, digests: list[bytes]) -> list[list[bytes]]:
        """Where each data digest is stored: `[backend, uid, checksum, ...]` (one read transaction)."""
        return [raw.split(b":") for raw in self.data_records(digests)]

    def data_records(self, digests: list[bytes]) -> list[bytes]:
        """Each data digest's record, `backend:uid:checksum:...` (one read transaction)."""
        import lmdb

        try:
            with self._env("hash").begin() as txn:
                get = txn.get
                raws = [get(b"h:" + digest) for digest in digests]
        except lmdb.Error as exc:
            raise self.damaged("hash", exc) from None
        if None in raws:
            missing = digests[raws.index(None)].decode()
            raise UserError(f"no stored data for {missing} in {self.path} (a partial clone?)")
        return raws

    def column_change(self, old_commit: str, new_commit: str, name: str) -> dict[str, Any]:
        """How a column changed between two commits, as data: `{"from": …, "to": …, "modified": 5}`
        (sample counts that are not zero; `schema` when it changed; `column`: added or removed)."""
        change: dict[str, Any] = {"from": old_commit, "to": new_commit}
        if not self.has_commit(old_commit):
            return change
        old, new = self.column_records(old_commit, name), self.column_records(new_commit, name)
        if old is None or new is None:
            return {**change, "column": "added" if old is None else "removed"}
        (old_schema, old_run), (new_schema, new_run) = old, new
        if schema := {k: [old_schema[k], new_schema[k]] for k in old_schema if old_schema[k] != new_schema[k]}:
            change["schema"] = schema
        counts = sample_counts(old_run, new_run, len(name.encode()) + 3)
        return {**change, **{what: n for what, n in counts.items() if n}}
