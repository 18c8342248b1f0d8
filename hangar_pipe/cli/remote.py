"""`hpipe remote`: the named remotes results and data are shared through (hpipe.yaml)."""

import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar_pipe.cli.app import arg, at_least, command, group, opt
from hangar_pipe.cli.console import out, print_table
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline, find_pipeline

if TYPE_CHECKING:
    from hangar_pipe.remote.transfer import TransferStats

REMOTE = group("remote", "Named remotes for `hpipe push`/`pull` (kept in hpipe.yaml).")
NAME = arg("name", help="The remote's name, e.g. origin.")
LOCAL = opt("--local", flag=True, help="Write to hpipe.local.yaml (this machine only, git-ignored) instead of"
                                       " hpipe.yaml.")


def _root() -> Path:
    return find_pipeline().parent


@command(REMOTE, "add", args=[
    NAME, arg("url", help="A folder path, file://..., s3://bucket/prefix, or any fsspec URL."),
    opt("--default", "-d", flag=True, help="Make it the default remote."), LOCAL,
    opt("--force", "-f", flag=True, help="Replace a remote of that name.")])
def remote_add(name: str, url: str, default: bool, local: bool, force: bool) -> None:
    """Name a remote. Example: `hpipe remote add origin s3://team-bucket/hpipe --default`."""
    from hangar_pipe.remote import config

    written = config.add(_root(), name, url, default=default, local=local, force=force)
    out(f"added remote '{name}' ({url}) to {written.name}" + (", the default" if default else ""))


@command(REMOTE, "modify", args=[
    NAME, arg("key", help="A setting: url, endpoint_url, region, profile, access_key_id, secret_access_key, ..."),
    arg("value", nargs="?", help="Its value (omit with --unset)."),
    opt("--unset", flag=True, help="Remove the setting."), LOCAL])
def remote_modify(name: str, key: str, value: str | None, unset: bool, local: bool) -> None:
    """Set one setting of a remote. Credentials always go to hpipe.local.yaml, never hpipe.yaml.

    Example: `hpipe remote modify origin secret_access_key XXXX`.
    """
    from hangar_pipe.remote import config

    if (value is None) != unset:
        raise UserError("give a VALUE, or --unset")
    written = config.modify(_root(), name, key, value, local=local)
    out(f"unset {name}.{key}" if unset else f"set {name}.{key} in {written.name}")


@command(REMOTE, "default", args=[NAME, LOCAL])
def remote_default(name: str, local: bool) -> None:
    """Make a remote the one push and pull use when no --remote is given.

    Example: `hpipe remote default origin`.
    """
    from hangar_pipe.remote import config

    config.set_default(_root(), name, local=local)
    out(f"'{name}' is the default remote")


@command(REMOTE, "list", args=[opt("--json", dest="as_json", flag=True, help="Print JSON.")])
def remote_list(as_json: bool) -> None:
    """The remotes this project knows, the default marked `*`; secrets are not shown.

    Example: `hpipe remote list`.
    """
    from hangar_pipe.remote import config

    remotes, default = config.load_remotes(_root())
    shown = {name: {"url": r.url, "default": name == default,
                    **{k: ("***" if k in config.CREDENTIAL_KEYS else v) for k, v in r.options.items()}}
             for name, r in sorted(remotes.items())}
    if as_json:
        out(json.dumps(shown, indent=2))
    elif not shown:
        out("no remotes; add one with `hpipe remote add NAME URL --default`")
    else:
        rows = [[("* " if s["default"] else "  ") + name, str(s["url"]),
                 ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("url", "default"))]
                for name, s in shown.items()]
        print_table("", ["name", "url", "settings"], rows, md=False)


@command(REMOTE, "remove", args=[NAME])
def remote_remove(name: str) -> None:
    """Forget a remote (in both files); what is stored on it is left alone.

    Example: `hpipe remote remove origin`.
    """
    from hangar_pipe.remote import config

    config.remove(_root(), name)
    out(f"removed remote '{name}'")


# -- hpipe push / hpipe pull: the cache remote ---------------------------------------------------

_JOBS_HELP = ("Parallel transfers: worker processes to a folder on a local disk (default one per core),"
              " threads to a network remote (default 4 per core).")
TRANSFER = [
    arg("targets", nargs="*", metavar="STAGE",
        help="Stages (or their outputs) whose outputs move; all stages by default."),
    opt("--remote", "-r", help="The remote (default: default_remote)."),
    opt("--run-cache", flag=True, help="Also every run-cache entry and the objects its outputs need."),
    opt("--history", flag=True, help="Also the run history (what `hpipe runs` lists)."),
    opt("-j", "--jobs", type=at_least(1), metavar="N", help=_JOBS_HELP),
    opt("--no-data", flag=True, help="Only the cache remote, not the Hangar data (data.remote)."),
    opt("--json", dest="as_json", flag=True, help="Print the counts as JSON."),
]


def size_text(n: int) -> str:
    """Bytes in words: 512 B, 3.4 kB, 12.0 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _n(count: int, word: str) -> str:
    """`1 object`, `2 objects`, `3 run-cache entries`."""
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{count:,} {word if count == 1 else plural}"


def transfer_line(stats: "TransferStats", pushing: bool) -> str:
    """`pushed 120 objects (3.4 MB) to 'origin'; 9,880 already there`, or that nothing was new."""
    where = f"'{stats.remote}'"
    if stats.moved == 0 and stats.entries == 0 and stats.runs == 0:
        counts = _n(stats.present, "object") + (f", {_n(stats.entries_present, 'run-cache entry')}"
                                                if stats.entries_present else "")
        counts += f", {_n(stats.runs_present, 'run record')}" if stats.runs_present else ""
        text = f"everything is already {'in ' + where if pushing else 'here'} ({counts})"
    else:
        entries = f" and {_n(stats.entries, 'run-cache entry')}" if stats.entries else ""
        entries += f" and {_n(stats.runs, 'run record')}" if stats.runs else ""
        text = (f"{'pushed' if pushing else 'pulled'} {_n(stats.moved, 'object')} ({size_text(stats.bytes)}){entries}"
                f" {'to' if pushing else 'from'} {where}; {stats.present:,} already {'there' if pushing else 'here'}")
    if stats.absent:
        text += f"; {len(stats.absent):,} missing from {'the local cache' if pushing else where}"
    if stats.restored:
        text += f"; restored {', '.join(stats.restored)}"
    if stats.cleaned:
        text += f"; removed {_n(stats.cleaned, 'temp file')} an interrupted push left there"
    return text


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C: one line and exit 130 (the transfers running cleaned up after themselves)."""
    try:
        yield
    except KeyboardInterrupt:
        print("\nhpipe: interrupted; nothing half-written was kept: rerun to resume", file=sys.stderr)
        raise SystemExit(130) from None


def _what(pipeline: "Pipeline", remote: str | None, no_data: bool) -> tuple[bool, bool]:
    """(cache remote?, data remote?) for a plain push or pull: each one that is configured."""
    cache = remote is not None or pipeline.has_cache_remote()
    data = not no_data and pipeline.spec.data.remote is not None
    if not cache and not data:
        raise UserError("no remote is configured: `hpipe remote add NAME URL --default` for outputs"
                        " and run results, `remote: host:port` under `data:` for the Hangar data")
    return cache, data


@command("push", args=TRANSFER)
def push(targets: list[str], remote: str | None, run_cache: bool, history: bool, jobs: int | None, no_data: bool,
         as_json: bool) -> None:
    """Upload what the remotes lack: the cached outputs pipeline.lock records (with --run-cache,
    the run cache too) to the cache remote, and the Hangar data branch to data.remote.

    Example: `hpipe push --run-cache`, then a colleague's clone can `hpipe pull --run-cache`.
    """
    from hangar_pipe.cli.console import ConsoleReporter, TransferReporter
    from hangar_pipe.cli.data import say_pushed

    pipeline = Pipeline.load()
    cache, data = _what(pipeline, remote, no_data)
    report: dict[str, Any] = {}
    with _interruptible():
        if cache:
            stats = pipeline.push_cache(targets or None, remote, run_cache=run_cache, history=history, jobs=jobs,
                                        reporter=TransferReporter())
            report = stats.to_dict()
            if not as_json:
                out(transfer_line(stats, pushing=True))
        if data:
            result = pipeline.data_push(reporter=ConsoleReporter(pipeline.stages))
            report["data"] = dataclasses.asdict(result)
            if not as_json:
                say_pushed(result)
    if as_json:
        out(json.dumps(report, indent=2, default=str))


@command("pull", args=TRANSFER)
def pull(targets: list[str], remote: str | None, run_cache: bool, history: bool, jobs: int | None, no_data: bool,
         as_json: bool) -> None:
    """Download what this machine lacks: the cached outputs pipeline.lock records (each
    hash-checked; those missing from the workspace are put back; with --run-cache, the remote's run
    cache too), and the Hangar data: its records, then the sample data of the columns the stages read.

    Example: `hpipe pull --run-cache` in a fresh clone, then `hpipe repro` restores instead of running.
    """
    from hangar_pipe.cli.console import ConsoleReporter, TransferReporter
    from hangar_pipe.cli.data import say_pulled

    pipeline = Pipeline.load()
    cache, data = _what(pipeline, remote, no_data)
    report: dict[str, Any] = {}
    stats = None
    with _interruptible():
        if data:  # first: a stage's outputs are put back beside the data they came from
            result = pipeline.data_pull(reporter=ConsoleReporter(pipeline.stages))
            report["data"] = dataclasses.asdict(result)
            if not as_json:
                say_pulled(result)
        if cache:
            stats = pipeline.pull_cache(targets or None, remote, run_cache=run_cache, history=history, jobs=jobs,
                                        reporter=TransferReporter(), check=False)
            report = {**stats.to_dict(), **report}
            if not as_json:
                out(transfer_line(stats, pushing=False))
    if as_json:
        out(json.dumps(report, indent=2, default=str))
    if stats is not None:
        stats.check()  # a corrupted remote object: exit 1, after the rest was pulled
