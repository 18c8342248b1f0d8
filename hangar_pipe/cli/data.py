"""`hpipe data`: the Hangar repository behind the pipeline."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hangar_pipe.cli.app import app
from hangar_pipe.cli.console import out
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

if TYPE_CHECKING:
    from hangar_pipe.hangar.remote import PullResult, PushResult

data_app = typer.Typer(help="The Hangar repository behind the pipeline.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("unlock")
def data_unlock(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    repo: Annotated[Path | None, typer.Option("--repo", help="The repository folder (default: data.repo).")] = None,
) -> None:
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
        return
    who, stale = held
    out(f"The writer lock of {folder} is held by {who}" + (" (that process is gone)." if stale else "."))
    if not stale and who.startswith("hpipe"):
        raise UserError("that hpipe stage is still running; wait for it to finish")
    if not yes and not typer.confirm("Release it? Only do this if nothing is writing to the repository"):
        raise typer.Exit(1)
    out(unlock(folder))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


@data_app.command("push")
def data_push(
    branch: Annotated[str | None, typer.Option(
        "--branch", "-b", help="The branch to push (default: data.ref, else the HEAD branch).")] = None,
) -> None:
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


@data_app.command("pull")
def data_pull(
    columns: Annotated[list[str] | None, typer.Option(
        "--columns", "-c", help="Fetch the data of these columns (repeat the option), instead of"
                                " those the stages read.")] = None,
    data_commit: Annotated[str | None, typer.Option(
        "--data-commit", help="Fetch the data at this commit (default: the commits pipeline.lock"
                              " records, else the branch head).")] = None,
    all_columns: Annotated[bool, typer.Option("--all-columns", help="Fetch the data of every column.")] = False,
    branch: Annotated[str | None, typer.Option(
        "--branch", "-b", help="The branch to pull (default: data.ref, else the HEAD branch).")] = None,
) -> None:
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


@data_app.command("server")
def data_server(
    folder: Annotated[Path, typer.Argument(help="Where the server keeps its data (created; not a project).")],
    port: Annotated[int, typer.Option("--port", "-p", help="The port to listen on.")] = 50051,
    ip: Annotated[str, typer.Option("--ip", help="The address to listen on (0.0.0.0: every interface).")] = "localhost",
    timeout: Annotated[int, typer.Option("--timeout", help="Stop after this many seconds.")] = 86400,
) -> None:
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
