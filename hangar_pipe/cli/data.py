"""`hpipe data`: the Hangar repository behind the pipeline."""

from pathlib import Path
from typing import TYPE_CHECKING

from hangar_pipe.cli.app import arg, at_least, command, confirm, group, opt
from hangar_pipe.cli.console import out
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

if TYPE_CHECKING:
    from hangar_pipe.hangar.remote import PullResult, PushResult

DATA = group("data", "The Hangar repository behind the pipeline.")
BRANCH = opt("--branch", "-b", help="The branch to push (default: data.ref, else the HEAD branch).")


@command(DATA, "unlock", args=[opt("--yes", "-y", flag=True, help="Do not ask for confirmation."),
                               opt("--repo", type=Path, metavar="FOLDER",
                                   help="The repository folder (default: data.repo).")])
def data_unlock(yes: bool, repo: Path | None) -> int:
    """Release Hangar's writer lock left by a killed run (check that nothing is writing first).

    Example: `hpipe data unlock` after `kill -9` of a stage that was writing Hangar data.
    """
    from hangar_pipe.hangar.write import describe_lock, unlock

    folder = repo if repo is not None else Pipeline.load().data_repo()
    if not (folder / ".hangar").is_dir():
        raise UserError(f"no Hangar repository in {folder}")
    held = describe_lock(folder)
    if held is None:
        out(f"The writer lock of {folder} is free; nothing to do.")
        return 0
    who, stale = held
    out(f"The writer lock of {folder} is held by {who}" + (" (that process is gone)." if stale else "."))
    if not stale and who.startswith("hpipe"):
        raise UserError("that hpipe stage is still running; wait for it to finish")
    if not yes and not confirm("Release it? Only do this if nothing is writing to the repository"):
        return 1
    out(unlock(folder))
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


@command(DATA, "push", args=[BRANCH])
def data_push(branch: str | None) -> None:
    """Push the Hangar data branch to the data remote (data.remote: host:port of a hangar server).

    Example: `hpipe data push`. A push the server refuses (its branch has commits yours lacks)
    fails with exit 1, naming both heads: pull, merge, push again.
    """
    from hangar_pipe.cli.console import ConsoleReporter

    pipeline = Pipeline.load()
    say_pushed(pipeline.data_push(branch, reporter=ConsoleReporter(pipeline.stages)))


def say_pushed(result: "PushResult") -> None:
    from hangar_pipe.hangar.store import short

    if result.commits == 0:
        out(f"{result.address} already has {result.branch} at {short(result.head)}; nothing to push.")
    else:
        out(f"Pushed {result.branch} to {result.address}: {result.commits} commit(s), now at"
            f" {short(result.head)}.")


@command(DATA, "pull", args=[
    opt("--columns", "-c", action="append", metavar="COLUMN",
        help="Fetch the data of these columns (repeat the option), instead of those the stages read."),
    opt("--data-commit", metavar="REF",
        help="Fetch the data at this commit (default: the commits pipeline.lock records, else the branch head)."),
    opt("--all-columns", flag=True, help="Fetch the data of every column."),
    opt("--branch", "-b", help="The branch to pull (default: data.ref, else the HEAD branch).")])
def data_pull(columns: list[str] | None, data_commit: str | None, all_columns: bool, branch: str | None) -> None:
    """Fetch the Hangar data branch from the data remote: its records (a clone when there is no
    repository yet), then the sample data of the columns the stages read, at the commit they need.

    Example: `hpipe data pull` after `git clone` of the project; `hpipe data pull --data-commit
    a=39a3b2c1` for an older data version.
    """
    from hangar_pipe.cli.console import ConsoleReporter

    if columns and all_columns:
        raise UserError("--columns and --all-columns: give one or the other")
    if data_commit is not None and not data_commit.strip():
        raise UserError("--data-commit: expected a branch or commit, got an empty string")
    pipeline = Pipeline.load()
    result = pipeline.data_pull(columns, data_commit, all_columns=all_columns, branch=branch,
                                reporter=ConsoleReporter(pipeline.stages))
    say_pulled(result)


def say_pulled(result: "PullResult") -> None:
    from hangar_pipe.hangar.store import short

    rec, data = result.records, result.data
    how = ("cloned" if rec.cloned else "updated" if rec.updated
           else "ahead of the server, not changed" if rec.ahead else "up to date")
    out(f"{rec.branch} from {rec.address}: {how}, at {short(rec.head)}.")
    for commit, names in data.wanted.items():
        out(f"  columns at {short(commit)}: {', '.join(names)}")
    if not data.wanted:
        out("No column to fetch data for (no stage reads one here; see --columns, --all-columns).")
    else:
        out(f"Fetched {data.samples} sample(s), {_mb(data.bytes)}; {data.present} were here already.")


@command(DATA, "server", args=[
    arg("folder", type=Path, help="Where the server keeps its data (created; not a project)."),
    opt("--port", "-p", type=at_least(1), default=50051, help="The port to listen on (default: 50051)."),
    opt("--ip", default="localhost", help="The address to listen on (0.0.0.0: every interface; default: localhost)."),
    opt("--timeout", type=at_least(1), default=86400, metavar="SECONDS",
        help="Stop after this many seconds (default: a day).")])
def data_server(folder: Path, port: int, ip: str, timeout: int) -> None:
    """Run a Hangar data server (Hangar's own `hangar server`, with hpipe's compatibility fixes)
    for `remote: host:port` under `data:` in pipeline.yaml.

    Example: `hpipe data server /srv/hangar --ip 0.0.0.0 --port 50051` on a host both machines reach.
    """
    from hangar_pipe.hangar.remote import serve

    out(f"hangar server for {folder} on {ip}:{port}; Ctrl-C stops it")
    try:
        serve(folder.resolve(), ip, port, timeout)
    except KeyboardInterrupt:
        pass
