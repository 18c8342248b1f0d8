"""The data remote: push and pull a Hangar repository to and from a `hangar server` (host:port).

Hangar's own remote does the transfer (`repo.remote.push`, `fetch`, `fetch_data`); around it,
this module adds what hpipe needs from it:

- a server that cannot be reached is a one-line `TransferError` within seconds (a TCP connect
  and a gRPC readiness check with a short timeout), not Hangar's retries or a hang;
- a rejected push (Hangar only warns `REJECTED` and returns) is an error naming both heads: the
  server's head is compared with the local one after every push;
- a pull fetches the records of one branch (a clone when there is no repository yet) and
  fast-forwards the local branch, never past local commits; then `fetch_data` fetches only the
  columns asked for, at the commits asked for.

Hangar is imported inside the functions (through `compat`), never when this module is imported.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hangar_pipe.core.reporter import Reporter
from hangar_pipe.core.spec import ADDRESS
from hangar_pipe.errors import TransferError, UserError
from hangar_pipe.hangar import compat, is_repository
from hangar_pipe.hangar.store import HangarStore, short

REMOTE = "hpipe"  # the name of the Hangar remote hpipe adds to the repository
CONNECT_TIMEOUT = 3.0  # seconds to reach the server before giving up


@dataclass(frozen=True)
class PushResult:
    """What `push` did: `commits` the server lacked and now has (0: it was up to date)."""

    address: str
    branch: str
    head: str  # the local head, now also the server's
    server_before: str | None  # the server's head before the push (None: a new branch there)
    commits: int


@dataclass(frozen=True)
class RecordsResult:
    """What fetching the records of a branch did to the local branch."""

    address: str
    branch: str
    head: str  # the local branch's head afterwards
    server_head: str
    cloned: bool = False  # there was no repository: one was created from the server's
    updated: bool = False  # the local branch moved (fast-forward, or created)
    ahead: bool = False  # the local branch has commits the server lacks (nothing to fetch)


@dataclass
class DataResult:
    """The sample data fetched: per commit, the columns asked for; samples and bytes fetched."""

    wanted: dict[str, list[str]] = field(default_factory=dict)
    samples: int = 0  # samples fetched now
    present: int = 0  # samples that were already here
    bytes: int = 0  # bytes added to the repository's data folder


@dataclass
class PullResult:
    """`pull`: the records, then the data."""

    records: RecordsResult
    data: DataResult


# -- the server ---------------------------------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of `host:port` (an IPv6 host in brackets); a UserError otherwise."""
    match = ADDRESS.match(address.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise UserError(f"expected host:port of a hangar server, such as localhost:50051, got '{address}'")
    return match["host"].strip("[]"), int(match["port"])


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """A TransferError (one line) unless something accepts a TCP connection at `address` within
    `timeout`. (A server that accepts but does not answer gRPC fails the first request, which
    has a deadline: `server_head`.)"""
    host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise TransferError(f"cannot reach the hangar server at {address} ({why}); is `hpipe data server"
                            f" FOLDER --port {port}` running there?") from None


@contextlib.contextmanager
def transferring(address: str, what: str) -> Iterator[list[Any]]:
    """Around Hangar's remote calls: its output swallowed, its warnings recorded (yielded), and a
    connection lost on the way turned into one line (a rerun resumes)."""
    try:
        with compat.transfer_output() as caught:
            yield caught
    except UserError:
        raise
    except Exception as exc:
        try:
            check_reachable(address)
        except TransferError:
            raise TransferError(f"lost the connection to the hangar server at {address} during {what};"
                                " rerun the command to resume") from None
        import grpc

        if isinstance(exc, (grpc.RpcError, ConnectionError)):
            details = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
            raise TransferError(f"{what} with the hangar server at {address} failed: {details}") from None
        raise


def server_head(address: str, branch: str) -> str | None:
    """The server's head of `branch` (None: no such branch there)."""
    with transferring(address, f"reading branch '{branch}'"):
        return compat.server_branch_head(address, branch)


def _use_remote(repository: Any, address: str) -> None:
    """The repository's Hangar remote `hpipe` names `address` (added, or changed)."""
    known = {r.name: r.address for r in repository.remote.list_all()}
    if known.get(REMOTE) == address:
        return
    if REMOTE in known:
        repository.remote.remove(REMOTE)
    repository.remote.add(REMOTE, address)


def _ancestors(store: HangarStore, commit: str) -> set[str]:
    seen: set[str] = set()
    todo = [commit]
    while todo:
        c = todo.pop()
        if c and c not in seen and store.has_commit(c):
            seen.add(c)
            todo.extend(store.parents(c))
    return seen


def _open_store(folder: Path) -> HangarStore:
    try:
        return HangarStore(folder)
    except FileNotFoundError:
        raise UserError(f"no Hangar repository in {folder}") from None


# -- push ---------------------------------------------------------------------------------------


def push(repo_folder: Path, address: str, branch: str | None = None,
         reporter: Reporter | None = None) -> PushResult:
    """Push `branch` (default: the repository's HEAD branch) to the server; a TransferError when
    the server refuses it because its branch has commits the local one lacks."""
    from hangar_pipe.hangar.write import open_repository

    store = _open_store(repo_folder)
    try:
        branch = branch or store.head_branch()
        local = store.branches().get(branch)
        if not local:
            raise UserError(f"branch '{branch}' of the Hangar repository {repo_folder} "
                            + ("has no commits" if local == "" else "does not exist; branches: "
                               + ", ".join(sorted(store.branches()))))
        check_reachable(address)
        before = server_head(address, branch)
        history = _ancestors(store, local)
        if before == local:
            return PushResult(address, branch, local, before, 0)
        if before is not None and before not in history:
            raise _rejected(address, branch, before, local)
        commits = len(history - (_ancestors(store, before) if before else set()))
    finally:
        store.close()
    if reporter is not None:
        reporter.progress("data push", "commits", 0, commits)
    repository = open_repository(repo_folder)
    _use_remote(repository, address)
    with transferring(address, f"the push of '{branch}'") as caught:
        compat.push(repository, REMOTE, branch)
    after = server_head(address, branch)
    if after != local or any("REJECTED" in str(w.message) for w in caught):
        raise _rejected(address, branch, after, local)
    if reporter is not None:
        reporter.progress("data push", "commits", commits, commits)
    return PushResult(address, branch, local, before, commits)


def _rejected(address: str, branch: str, server: str | None, local: str) -> TransferError:
    return TransferError(
        f"push rejected: {branch} on the hangar server at {address} is at {short(server or 'none')},"
        f" which the local {branch} ({short(local)}) does not contain; run `hpipe data pull` to"
        f" fetch its commits (to branch {REMOTE}/{branch}), merge them into {branch}, then push again")


# -- pull ---------------------------------------------------------------------------------------


def fetch_records(repo_folder: Path, address: str, branch: str | None = None) -> RecordsResult:
    """Fetch the commit records of `branch` (default: the HEAD branch, or master for a new
    repository) and fast-forward the local branch to the server's head. With no repository
    in `repo_folder` yet, it is created from the server's (a clone: records only, no data)."""
    from hangar_pipe.hangar.write import check_lock, open_repository

    exists = is_repository(repo_folder)
    if branch is None:
        branch = _head_branch(repo_folder) if exists else "master"
    check_reachable(address)
    remote_head = server_head(address, branch)
    if remote_head is None:
        raise TransferError(f"the hangar server at {address} has no branch '{branch}' (push it"
                            " first: hpipe data push)")
    if exists:
        check_lock(repo_folder)
    repository = open_repository(repo_folder)
    _use_remote(repository, address)
    store = _open_store(repo_folder)
    try:
        local = store.branches().get(branch) or None
        if local == remote_head or (local and remote_head in _ancestors(store, local)):
            return RecordsResult(address, branch, local, remote_head, ahead=local != remote_head)
    finally:
        store.close()
    with transferring(address, f"the fetch of '{branch}'"):
        repository.remote.fetch(REMOTE, branch)
    store = _open_store(repo_folder)
    try:
        if local and local not in _ancestors(store, remote_head):
            raise TransferError(
                f"the local {branch} ({short(local)}) and the one on the hangar server at {address}"
                f" ({short(remote_head)}) have diverged; the server's commits are in branch"
                f" {REMOTE}/{branch}: merge it into {branch} (Hangar's repo.merge), then push")
    finally:
        store.close()
    if local and _head_branch(repo_folder) == branch and compat.staging_dirty(repository):
        raise UserError(f"the staging area of {repo_folder} (branch '{branch}') has uncommitted"
                        " changes; commit or reset them before pulling")
    compat.set_branch_head(repository, branch, remote_head)
    return RecordsResult(address, branch, remote_head, remote_head, cloned=not exists, updated=True)


def _head_branch(folder: Path) -> str:
    store = _open_store(folder)
    try:
        return store.head_branch()
    finally:
        store.close()


def missing_samples(repo_folder: Path, wanted: dict[str, list[str]]) -> tuple[int, int]:
    """(samples whose data is not here yet, samples here) of the columns wanted at each commit."""
    store = _open_store(repo_folder)
    try:
        digests = {d for commit, columns in wanted.items() for column in columns
                   for d in store.samples(commit, column).values()}
        specs = store.data_specs(sorted(digests))
    finally:
        store.close()
    absent = sum(1 for spec in specs if spec[0] == b"50")  # Hangar's backend for "on the remote"
    return absent, len(specs) - absent


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def fetch_data(repo_folder: Path, address: str, wanted: dict[str, list[str]],
               reporter: Reporter | None = None) -> DataResult:
    """Fetch the sample data of `wanted` (commit -> columns) that is not here yet; a rerun after
    an interruption fetches what is still missing."""
    from hangar_pipe.hangar.write import open_repository

    result = DataResult({c: cols for c, cols in wanted.items() if cols})
    missing, result.present = missing_samples(repo_folder, result.wanted)
    if not missing:
        return result
    check_reachable(address)
    repository = open_repository(repo_folder)
    _use_remote(repository, address)
    data_dir = repo_folder / ".hangar" / "data"
    size = _size(data_dir)
    for i, (commit, columns) in enumerate(result.wanted.items()):
        if reporter is not None:
            reporter.progress("data pull", f"columns at {short(commit)}", i, len(result.wanted))
        with transferring(address, f"the fetch of data at {short(commit)}"):
            repository.remote.fetch_data(REMOTE, commit=commit, column_names=columns)
    still, _ = missing_samples(repo_folder, result.wanted)
    result.samples, result.bytes = missing - still, _size(data_dir) - size
    if still:
        raise TransferError(f"{still} samples could not be fetched from the hangar server at"
                            f" {address}; rerun the command to fetch them")
    return result


# Hangar 0.5.2's server writes concurrent PushData requests on several threads and then sometimes
# fails or hangs (docs/remotes.md#setting-up-a-server): one worker thread, queued requests.
SERVER_CONFIG = """\
[SERVER_GRPC]
channel_address = [::]:50051
max_thread_pool_workers = 1
max_concurrent_rpcs = 16
enable_compression = NoCompression
optimization_target = throughput
fetch_max_nbytes = 500_000_000

[SERVER_ADMIN]
restrict_push = 0
username = --none--
password = --none--

[CLIENT_GRPC]
enable_compression = NoCompression
optimization_target = throughput
push_max_nbytes = 600_000_000
"""


def serve(folder: Path, ip: str, port: int, timeout: int) -> None:
    """Run Hangar's own server (`hangar server`) in `folder`, with hpipe's compatibility fixes (a
    plain `hangar server` fails on today's numpy when it serves sample data). A new server folder
    gets `SERVER_CONFIG`; an existing one keeps its config_server.ini. Blocks."""
    folder.mkdir(parents=True, exist_ok=True)
    compat.import_hangar()
    from hangar.cli import cli

    os.chdir(folder)
    if not (folder / ".hangar_server").exists():
        compat.init_server_folder(folder / ".hangar_server", SERVER_CONFIG)
    cli.main(args=["server", "--ip", ip, "--port", str(port), "--timeout", str(timeout)],
             prog_name="hangar", standalone_mode=False)
