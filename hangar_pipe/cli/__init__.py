"""`hpipe`: a thin typer layer over `hangar_pipe.Pipeline`. Exit codes: 0 ok, 1 stage failed, 2 bad input."""

from __future__ import annotations

import sys
import warnings

import typer

# each module adds its commands to the app; --help lists them in this order
from hangar_pipe.cli import run  # noqa: F401

# isort: split
from hangar_pipe.cli import results  # noqa: F401

# isort: split
from hangar_pipe.cli import data  # noqa: F401

# isort: split
from hangar_pipe.cli import remote  # noqa: F401
from hangar_pipe.cli.app import app, options
from hangar_pipe.errors import UserError


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """hpipe's own warnings (`hpipe: ...`) as one line, `hpipe: warning: ...`; others as Python has them."""
    text = str(message)
    if text.startswith("hpipe: "):
        return f"hpipe: warning: {text[len('hpipe: '):]}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main() -> None:
    """Entry point: bad input is one line on stderr and exit code 2, no traceback (unless --debug)."""
    warnings.formatwarning = _format_warning
    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        if options["debug"] or "--debug" in sys.argv:
            raise
        print(f"hpipe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if "NoArgsIsHelp" in type(exc).__name__:  # bare `hpipe`: the help text
            print(exc.format_message(), file=sys.stderr)
        else:  # a bad option or argument: one line, like any other bad input
            print(f"hpipe: error: {exc.format_message()} (see --help)", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
