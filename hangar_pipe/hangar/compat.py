"""Every workaround hangar 0.5.2 needs on a modern stack, in one place. Import hangar only via `import_hangar()`.

- numpy >= 1.24 removed `np.bool`, `np.math` and `np.typeDict`, which Hangar uses. Hangar
  looks `np.typeDict` up by type number and char code too, so `np.sctypeDict` alone is not
  enough: it is rebuilt with those keys.
- protobuf >= 4 rejects Hangar's generated code unless the pure-python implementation is used.
- Hangar prints to stdout on init/checkout; `quiet()` silences that around calls.
- `import blosc` imports numpy and blosc's unittest module (~0.25 s); reading Hangar's commit
  records on the no-op path needs only its C extension, which `blosc_decompress()` loads alone.
- A writer checkout's `diff.status()` (run by Hangar when it opens and on every commit) parses
  and hashes every record of the head commit: `staged_status` compares bytes instead.
- A writer checkout reads every sample record of every column into a dict as it opens (~0.6 s
  per 150,000 samples), though a stage writes one column: `LazySamples` reads a column's when it
  is first needed, one sample's location with one lookup.
- A commit compresses its records at zstd level 8 (~0.2 s per 150,000) with one Python call
  per record: `commit_ref` makes the same records and digest at level 1.
- `import hangar` imports its torch loader, whose module body subclasses torch's `Dataset`:
  `import torch` (~2 s) in every process that imports Hangar, ingest and `hpipe data` included.
  `import_hangar()` stands a module in for it whose `make_torch_dataset` imports the real one
  on its first call (`defer_torch_loader()`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from functools import cache
from types import ModuleType
from typing import Any


def _lacks(np: Any, name: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            getattr(np, name)
            return False
        except AttributeError:
            return True


NUMPY_ALIASES = ("bool", "math", "typeDict")


def missing_numpy_aliases() -> list[str]:
    """The numpy aliases Hangar uses that this numpy lacks (none after `patch_numpy()`)."""
    import numpy as np

    return [name for name in NUMPY_ALIASES if _lacks(np, name)]


def patch_numpy() -> None:
    """Restore the numpy aliases Hangar uses; each is a no-op where the alias still exists."""
    import numpy as np

    if _lacks(np, "bool"):
        setattr(np, "bool", np.bool_)
    if _lacks(np, "math"):
        setattr(np, "math", math)
    if _lacks(np, "typeDict"):
        table: dict[Any, type] = dict(np.sctypeDict)
        for code in np.typecodes["All"]:
            try:
                dtype = np.dtype(code)
            except TypeError:
                continue
            table.setdefault(code, dtype.type)
            table.setdefault(dtype.num, dtype.type)
        setattr(np, "typeDict", table)


def patch_protobuf() -> None:
    """Use protobuf's pure-python implementation when protobuf >= 4 is installed (before first import)."""
    try:
        from importlib.metadata import version

        major = int(version("protobuf").split(".")[0])
    except Exception:  # noqa: BLE001 - not installed or odd version: leave it alone
        return
    if major >= 4:
        os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


def import_hangar() -> ModuleType:
    """Import hangar with the workarounds applied (~1 s: call it only where needed; torch is not imported)."""
    patch_protobuf()
    patch_numpy()
    defer_torch_loader()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import hangar
    patch_imported_hangar()
    module: ModuleType = hangar
    return module


@contextlib.contextmanager
def _reader(env: Any) -> Iterator[Any]:
    """A read transaction on an lmdb env of Hangar's, through its register (shared with any this
    thread has open on it)."""
    from hangar.txnctx import TxnRegister

    txn = TxnRegister().begin_reader_txn(env)
    try:
        yield txn
    finally:
        TxnRegister().abort_reader_txn(env)


def _staged_records(stageenv: Any) -> list[bytes]:
    """Every staged record as a commit stores it, `key value` (Hangar's CMT_KV_JOIN_KEY), in key
    order; a commit joins them with `$`."""
    with _reader(stageenv) as txn, txn.cursor() as cursor:
        return list(map(b" ".join, cursor.iternext()))


_STATUS_SEEN: dict[Any, str] = {}  # (staging env, its last write, head commit) -> the status then


def staged_status(differ: Any) -> str:
    """Hangar's `WriterUserDiff.status()` ("CLEAN" when the staging area holds exactly the
    branch head), without parsing the head commit's records one by one: the staging records,
    joined as a commit stores them (`key value`, `$` between, in key order), are compared with
    the head commit's stored bytes. Hangar calls it when a writer checkout opens and on every
    commit. Hangar's own status also checks the head commit against its digest (a damaged
    commit is an IOError): that check still runs, once per content of the commit
    (`verified_head`). Asked again in this process with neither the staging area (its last
    write transaction) nor the head changed, the answer is the same, and is not computed again."""
    from hangar.records.heads import get_branch_head_commit

    head = get_branch_head_commit(differ._branchenv, differ._branch_name)
    env = differ._stageenv
    seen = (id(env), env.path(), env.info()["last_txnid"], head)
    if seen not in _STATUS_SEEN:
        _STATUS_SEEN.clear()
        _STATUS_SEEN[seen] = _staged_status(differ, head)
    return _STATUS_SEEN[seen]


def _staged_status(differ: Any, head: str) -> str:
    staged = b"$".join(_staged_records(differ._stageenv))
    if head == "":
        return "CLEAN" if staged == b"" else "DIRTY"
    raw = verified_head(differ._refenv, head)
    if raw is None:
        return str(ORIGINAL_STATUS[0](differ))  # (Hangar's own: it says what is wrong)
    return "CLEAN" if bytes(blosc_decompress()(raw)) == staged else "DIRTY"


VERIFIED_FILE = "hpipe-verified-commits"  # in .hangar/: `commit content-hash` lines


def _commit_values(refenv: Any, commit: str) -> tuple[bytes, str] | None:
    """A commit's stored records (compressed) and a hash of everything its digest covers."""
    import xxhash
    from hangar.records.parsing import (
        commit_parent_db_key_from_raw_key,
        commit_ref_db_key_from_raw_key,
        commit_spec_db_key_from_raw_key,
    )

    with _reader(refenv) as txn:
        values = [txn.get(key(commit)) for key in (commit_ref_db_key_from_raw_key,
                                                   commit_spec_db_key_from_raw_key,
                                                   commit_parent_db_key_from_raw_key)]
    if any(v is None for v in values):
        return None
    raw, spec, parent = (bytes(v) for v in values)
    content = xxhash.xxh3_128_hexdigest(b"\0".join((raw, spec, parent)))
    return raw, f"{commit} {content}"


def _verified_lines(refenv: Any) -> tuple[Any, set[str]]:
    from pathlib import Path

    file = Path(refenv.path()).parent / VERIFIED_FILE
    try:
        return file, set(file.read_text().splitlines())
    except (OSError, UnicodeDecodeError):
        return file, set()


def _remember(file: Any, lines: set[str], line: str) -> None:
    """Keep the newest 64 verified commits (atomically: a torn file is only a cache miss)."""
    from hangar_pipe.core.atomic import atomic_write

    kept = sorted(lines)[-63:] + [line]
    try:
        atomic_write(file, ("\n".join(kept) + "\n").encode())
    except OSError:
        pass


def verified_head(refenv: Any, commit: str) -> bytes | None:
    """The commit's stored records, once Hangar's own check of the commit against its digest
    passed (IOError when it is damaged). A check that passed is remembered by a hash of the bytes
    it covered, in `.hangar/hpipe-verified-commits`: the same bytes pass again, and any damage
    changes them, so it is checked again."""
    from hangar.records.commiting import get_commit_ref

    found = _commit_values(refenv, commit)
    if found is None:
        return None
    raw, line = found
    file, lines = _verified_lines(refenv)
    if line not in lines:
        get_commit_ref(refenv, commit)  # parses and hashes every record: IOError if damaged
        _remember(file, lines, line)
    return raw


def remember_commit(refenv: Any, commit: str) -> None:
    """A commit Hangar just made from the staging area: its digest was computed from these very
    records, so it counts as checked."""
    found = _commit_values(refenv, commit)
    if found is not None:
        file, lines = _verified_lines(refenv)
        _remember(file, lines, found[1])


def commit_ref(stageenv: Any) -> Any:
    """Hangar's `commiting._commit_ref`: every staged record, joined and compressed as a commit
    stores them, and their digest (the commit hash is made of it). The same records and digest,
    made with fewer Python steps, and compressed at blosc's zstd level 1 instead of 8 (0.22 s
    instead of 0.35-0.57 s in all at 150,000 records, the compression ~0.02 s of it instead of
    ~0.2 s, and 2% smaller there): readers only decompress it, and nothing hashes the
    compressed bytes."""
    import blosc
    from hangar.records.parsing import DigestAndBytes, _commit_ref_joined_kv_digest

    joined = _staged_records(stageenv)
    raw = blosc.compress(b"$".join(joined), typesize=1, clevel=1, shuffle=blosc.NOSHUFFLE, cname="zstd")
    return DigestAndBytes(digest=_commit_ref_joined_kv_digest(joined), raw=raw)


ORIGINAL_STATUS: list[Callable[[Any], str]] = []  # Hangar's own status(), for the tests
ORIGINAL_COMMIT_REF: list[Callable[[Any], Any]] = []  # Hangar's own _commit_ref(), for the tests


def patch_writer_status() -> None:
    """Replace Hangar's `WriterUserDiff.status` with `staged_status` and its `_commit_ref` with
    `commit_ref`, and have a writer's commit remember the commit it made as checked (once)."""
    from hangar.checkout import WriterCheckout
    from hangar.diff import WriterUserDiff
    from hangar.records import commiting

    if ORIGINAL_STATUS:
        return
    ORIGINAL_STATUS.append(WriterUserDiff.status)
    setattr(WriterUserDiff, "status", staged_status)
    ORIGINAL_COMMIT_REF.append(commiting._commit_ref)
    setattr(commiting, "_commit_ref", commit_ref)
    commit = WriterCheckout.commit

    def commit_and_remember(self: Any, commit_message: str) -> str:
        made: str = commit(self, commit_message)
        remember_commit(self._refenv, made)
        return made

    commit_and_remember.__doc__ = commit.__doc__
    setattr(WriterCheckout, "commit", commit_and_remember)


# -- a writer checkout's sample maps, read when first needed ----------------------------------------

#: a writer's ColumnTxn -> whether its repository holds references to remote data (read once per writer)
_REMOTE_SEEN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _seeing_writes(env: Any) -> Iterator[Any]:
    """A transaction to read `env` in: the write transaction open on it in this thread (so its own
    writes are seen, and no second transaction is begun beside it), else a read transaction."""
    from hangar.txnctx import TxnRegister

    register = TxnRegister()
    if register.WriterAncestors[env] > 0:
        yield register.WriterTxn[env]
    else:
        with _reader(env) as txn:
            yield txn


@contextlib.contextmanager
def _reading(txnctx: Any) -> Iterator[tuple[Any, Any]]:
    """(the staging records' transaction, the hash records' one) of a writer's column."""
    with _seeing_writes(txnctx.dataenv) as data, _seeing_writes(txnctx.hashenv) as hashes:
        yield data, hashes


class LazySamples(MutableMapping[Any, Any]):
    """A write checkout's flat column's map of sample key -> data location, as Hangar builds when the
    checkout opens (`_flat_load_sample_keys_and_specs`), read from the staging area only when first
    needed: a sample's own location is one lookup (kept: the same object each time, as in
    Hangar's map); the whole map (`len`, iteration, an odd key) is read at the first call that
    needs it. The staging records are the truth the map mirrors, and only the column changes
    them, each time before it updates the map. `backends(codes)` opens the data files of the
    locations read (Hangar opens them as it builds the map). Two differences, in what Hangar
    does not promise: a map read after writes lists its keys in the staging area's order (as
    the next checkout does), not with the written ones last; and a lookup reads the staging
    area, so a column is no more thread-safe to read than Hangar's writer is to use."""

    def __init__(self, column: str, txnctx: Any, backends: Callable[[set[str]], None]) -> None:
        from hangar.records import flat_data_column_record_start_range_key

        self._column, self._txnctx, self._backends = column, txnctx, backends
        self._start = flat_data_column_record_start_range_key(column)
        self._map: dict[Any, Any] | None = None
        self._known: dict[Any, Any] = {}  # locations read or set one at a time, until the map is read

    def _all(self) -> dict[Any, Any]:
        if self._map is None:
            from hangar.backends import backend_decoder
            from hangar.mixins import CursorRangeIterator
            from hangar.records import (
                data_record_digest_val_from_db_val,
                dynamic_layout_data_record_from_db_key,
                hash_data_db_key_from_raw_key,
            )

            found = {}
            with _reading(self._txnctx) as (data, hashes):
                for key, value in CursorRangeIterator.cursor_range_iterator(data, self._start, True, True):
                    digest = data_record_digest_val_from_db_val(value).digest
                    found[dynamic_layout_data_record_from_db_key(key).sample] = backend_decoder(
                        hashes.get(hash_data_db_key_from_raw_key(digest)))
            found.update((key, spec) for key, spec in self._known.items() if key in found)
            self._backends({spec.backend for spec in found.values()})
            self._map, self._known = found, {}
        return self._map

    def _one(self, key: Any) -> Any:
        """The location of one sample, read alone (None: no such sample); Ellipsis for a key that
        only the whole map can answer as a dict would (not a plain int >= 0 or a valid str)."""
        from hangar.utils import is_suitable_user_key

        if key in self._known:
            return self._known[key]
        if type(key) not in (int, str) or not is_suitable_user_key(key):
            return ...
        from hangar.backends import backend_decoder
        from hangar.records import (
            data_record_digest_val_from_db_val,
            flat_data_db_key_from_names,
            hash_data_db_key_from_raw_key,
        )

        with _reading(self._txnctx) as (data, hashes):
            value = data.get(flat_data_db_key_from_names(self._column, key))
            if value is None:
                return None
            spec = backend_decoder(hashes.get(hash_data_db_key_from_raw_key(
                data_record_digest_val_from_db_val(value).digest)))
        self._backends({spec.backend})
        self._known[key] = spec
        return spec

    def __getitem__(self, key: Any) -> Any:
        if self._map is not None:
            return self._map[key]
        spec = self._one(key)
        if spec is ...:
            return self._all()[key]
        if spec is None:
            raise KeyError(key)
        return spec

    def __contains__(self, key: object) -> bool:
        if self._map is not None:
            return key in self._map
        spec = self._one(key)
        return key in self._all() if spec is ... else spec is not None

    def __setitem__(self, key: Any, spec: Any) -> None:
        (self._known if self._map is None else self._map)[key] = spec

    def __delitem__(self, key: Any) -> None:
        if self._map is None:
            self._known.pop(key, None)
        else:
            del self._map[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def keys(self) -> Any:
        return self._all().keys()

    def values(self) -> Any:
        return self._all().values()

    def items(self) -> Any:
        return self._all().items()


def _has_remote_data(txnctx: Any) -> bool:
    """Whether any data record of the repository is a reference to a remote (a partial clone or
    fetch): then Hangar's columns warn as they open, which needs their whole maps. Read once per
    checkout's columns: one pass over the hash records' values, without decoding them."""
    from operator import methodcaller

    from hangar.backends import BACKEND_IS_LOCAL_MAP
    from hangar.records import hash_data_db_key_from_raw_key

    if txnctx not in _REMOTE_SEEN:
        remote = tuple(code.encode() for code, local in BACKEND_IS_LOCAL_MAP.items() if not local)
        prefix = hash_data_db_key_from_raw_key("")
        with _seeing_writes(txnctx.hashenv) as txn, txn.cursor() as cursor:
            # (the data hashes, then the schemas: their values are JSON)
            _REMOTE_SEEN[txnctx] = cursor.set_range(prefix) and any(
                map(methodcaller("startswith", remote), cursor.iternext(keys=False, values=True)))
    return bool(_REMOTE_SEEN[txnctx])


ORIGINAL_FLAT_COLUMN: list[Callable[..., Any]] = []  # Hangar's own, for the tests


def lazy_flat_column(txnctx: Any, column_name: str, path: Any, schema: Any, mode: str) -> Any:
    """Hangar's `generate_flat_column` for the columns a writer checkout opens with (a column added
    later is new, and gets Hangar's own), with a `LazySamples` map:
    opening a writer no longer reads every sample record of every column (~0.6 s per 150,000).
    Readers, nested columns and repositories holding remote references get Hangar's own."""
    original = ORIGINAL_FLAT_COLUMN[0]
    if mode != "a" or _has_remote_data(txnctx):
        return original(txnctx, column_name, path, schema, mode)
    from hangar.columns.common import open_file_handles
    from hangar.columns.layout_flat import FlatSampleWriter

    handles = open_file_handles(backends={schema.backend}, path=path, mode="a", schema=schema)

    def backends(codes: set[str]) -> None:  # (`handles` is the column's own dict of them)
        if missing := codes - handles.keys():
            handles.update(open_file_handles(backends=missing, path=path, mode="a", schema=schema))

    return FlatSampleWriter(aset_ctx=txnctx, columnname=column_name, samples=LazySamples(column_name, txnctx, backends),
                            backend_handles=handles, schema=schema, repo_path=path, mode=mode)


def patch_lazy_columns() -> None:
    """Have a writer checkout's flat columns read their sample maps when first needed."""
    from hangar.columns import column

    if not ORIGINAL_FLAT_COLUMN:
        ORIGINAL_FLAT_COLUMN.append(column.generate_flat_column)
        setattr(column, "generate_flat_column", lazy_flat_column)


def patch_imported_hangar() -> None:
    """The patches of Hangar's own code, once it is imported: the writer's status and commit
    (`patch_writer_status`), and its sample maps (`patch_lazy_columns`)."""
    patch_writer_status()
    patch_lazy_columns()


TORCH_LOADER = "hangar.dataloaders.torchloader"


def defer_torch_loader() -> None:
    """Before `import hangar`: a stand-in for its torch loader module, so that importing Hangar
    does not import torch; the real module is imported when anything of it is first used."""
    import sys

    if TORCH_LOADER in sys.modules:
        return
    stand_in = ModuleType(TORCH_LOADER, "Stands in for Hangar's torch loader until it is used (hangar_pipe compat).")

    def real() -> ModuleType:
        if sys.modules.get(TORCH_LOADER) is stand_in:
            del sys.modules[TORCH_LOADER]
        import importlib

        module = importlib.import_module(TORCH_LOADER)
        setattr(sys.modules["hangar"], "make_torch_dataset", module.make_torch_dataset)
        return module

    def make_torch_dataset(*args: Any, **kwargs: Any) -> Any:
        return real().make_torch_dataset(*args, **kwargs)

    def __getattr__(name: str) -> Any:  # TorchDataset, ... (not the import system's dunder probes)
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.make_torch_dataset = make_torch_dataset  # type: ignore[attr-defined]
    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[TORCH_LOADER] = stand_in


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what Hangar prints to stdout (init, checkout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@cache
def blosc_decompress() -> Callable[[bytes], bytes]:
    """blosc's `decompress`, from its C extension alone (no numpy, no `blosc/__init__`)."""
    import importlib.machinery
    import importlib.util
    import sys

    if "blosc" in sys.modules:  # already paid for: use it
        return sys.modules["blosc"].decompress  # type: ignore[no-any-return]
    spec = importlib.util.find_spec("blosc")
    if spec is None or spec.origin is None:
        raise ImportError("blosc is not installed (it comes with hangar)")
    folder = os.path.dirname(spec.origin)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "blosc_extension" + suffix)
        if os.path.exists(path):
            break
    else:
        import blosc

        return blosc.decompress  # type: ignore[no-any-return]
    loader = importlib.machinery.ExtensionFileLoader("blosc.blosc_extension", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    ext = importlib.util.module_from_spec(spec)
    loader.exec_module(ext)
    ext.init()
    return lambda data: bytes(ext.decompress(data, False))


# -- remotes (hangar server) ---------------------------------------------------------------------


@contextlib.contextmanager
def transfer_output() -> Iterator[list[warnings.WarningMessage]]:
    """Around Hangar's remote calls: swallow its prints and tqdm bars (stdout, stderr) and record
    every warning, so a `REJECTED` push is seen even where the user silenced warnings."""
    import logging

    log = logging.getLogger("hangar")
    propagate = log.propagate
    log.propagate = False  # its logger.error lines would reach stderr through logging's last resort
    log.addHandler(logging.NullHandler())
    try:
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("always")
            yield caught
    finally:
        log.propagate = propagate


def server_branch_head(address: str, branch: str, timeout: float = 5.0) -> str | None:
    """The head commit of `branch` on the hangar server at `address`; None when it has no such
    branch (or the branch has no commits). One RPC, Hangar's `FetchBranchRecord`, without a
    repository: Hangar's client needs one, and has no public call for this."""
    import grpc

    import_hangar()
    from hangar.remote import hangar_service_pb2 as pb2
    from hangar.remote import hangar_service_pb2_grpc as pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = pb2_grpc.HangarServiceStub(channel)
        request = pb2.FetchBranchRecordRequest(rec=pb2.BranchRecord(name=branch))
        try:
            head: str = stub.FetchBranchRecord(request, timeout=timeout).rec.commit
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
    return head or None


def staging_dirty(repository: Any) -> bool:
    """Whether the staging area holds uncommitted changes (takes the writer lock for a moment)."""
    with quiet():
        co = repository.checkout(write=True)
    try:
        return bool(co.diff.status() == "DIRTY")
    finally:
        co.close()


def set_branch_head(repository: Any, branch: str, commit: str) -> None:
    """Point `branch` at `commit` (creating it), after a fetch. Hangar's fast-forward merge would
    replace the staging area even when `branch` is not the checked-out one; here the staging area
    follows only when `branch` is the staging branch (or the repository has no commits yet)."""
    from hangar.records import heads

    env = repository._env
    staging = heads.get_staging_branch_head(env.branchenv)
    fresh = not heads.get_branch_head_commit(env.branchenv, staging)
    if branch in heads.get_branch_names(env.branchenv):
        heads.set_branch_head_commit(env.branchenv, branch, commit)
    else:
        heads.create_branch(env.branchenv, name=branch, base_commit=commit)
    if branch == staging or fresh:
        with quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            co = repository.checkout(write=True, branch=branch)
            try:
                co.reset_staging_area()
            finally:
                co.close()


def init_server_folder(folder: Any, config: str) -> None:
    """Create a `hangar server` folder as the server does on first start, with `config` as its
    config_server.ini (which it then reads instead of writing its defaults)."""
    import_hangar()
    from hangar.context import Environments

    with quiet():
        envs = Environments(pth=folder)
        envs.init_repo(user_name="SERVER_USER", user_email="SERVER_USER@HANGAR.SERVER", remove_old=False)
        envs._close_environments()
    (folder / "config_server.ini").write_text(config)


def push(repository: Any, remote: str, branch: str) -> None:
    """Hangar's `repository.remote.push`. After a push succeeded, Hangar moves its remote-tracking
    branch (`<remote>/<branch>`), and raises ValueError ("... no-op performed") when that branch is
    already at the pushed head (the same commits pushed before to another server under the same
    remote name): the push itself is done, so that one error is not one. The caller checks the
    server's head after."""
    try:
        repository.remote.push(remote, branch)
    except ValueError as exc:
        if "no-op performed" not in str(exc):
            raise
