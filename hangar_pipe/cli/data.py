"""`hpipe data`: the Hangar repository behind the pipeline."""

from pathlib import Path
from typing import Annotated

import typer

from hangar_pipe.cli.app import app
from hangar_pipe.cli.console import out
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

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
