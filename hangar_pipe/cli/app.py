"""The typer application and its global options; the commands are in run.py, results.py and data.py."""

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hangar_pipe.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Reproducible ML pipelines over versioned Hangar tensor data.")
options: dict[str, Any] = {"debug": False}


def _version(show: bool) -> None:
    if show:
        from hangar_pipe import __version__

        print(f"hpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    directory: Annotated[Path | None, typer.Option("-C", help="Run as if started in this folder.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    options["debug"] = debug
    if debug:  # stage processes too: a `uses:` stage then shows the traceback of its error
        os.environ["HPIPE_DEBUG"] = "1"
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise UserError(f"cannot change to folder: {exc.strerror}", file=str(directory)) from None
