"""The typer application and its global options; the commands are in run.py, results.py and data.py."""

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hangar_pipe.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible ML pipelines over versioned Hangar tensor data.")
options: dict[str, Any] = {"debug": False}


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    directory: Annotated[Path | None, typer.Option("-C", help="Run as if started in this folder.")] = None,
) -> None:
    options["debug"] = debug
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise UserError(f"cannot change to folder: {exc.strerror}", file=str(directory)) from None
