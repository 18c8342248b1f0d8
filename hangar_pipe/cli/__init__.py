"""`hpipe`: a thin argparse layer over `hangar_pipe.Pipeline`. Exit codes: 0 ok, 1 stage failed, 2 bad input."""

from __future__ import annotations

import sys
import warnings

from hangar_pipe.cli import app
from hangar_pipe.errors import UserError


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """hpipe's own warnings (`hpipe: ...`) as one line, `hpipe: warning: ...`; others as Python has them."""
    text = str(message)
    if text.startswith("hpipe: "):
        return f"hpipe: warning: {text[len('hpipe: '):]}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning

# The modules that declare the commands, with the first words they declare, in the order
# `hpipe --help` lists them. A command line imports only the module of its word (all of them:
# ~3 ms of a ~100 ms no-op); tests/test_cli_help.py checks this table against the declarations.
MODULES = {"hangar_pipe.cli.run": ("repro", "status", "commit", "dag", "init"),
           "hangar_pipe.cli.results": ("metrics", "runs", "params", "gc", "plots", "report"),
           "hangar_pipe.cli.data": ("data",),
           "hangar_pipe.cli.remote": ("remote", "push", "pull"),
           "hangar_pipe.cli.exp": ("exp",)}


def declare(word: str | None = None) -> None:
    """Import the module that declares this command word (every module, for None or a word
    no module declares)."""
    import importlib

    chosen = [m for m, words in MODULES.items() if word in words] or list(MODULES)
    for module in chosen:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, no traceback (unless --debug)."""
    warnings.formatwarning = _format_warning
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app.run(args, declare)
    except UserError as exc:
        if (app.options["debug"] or "--debug" in args) and not isinstance(exc, app.UsageError):
            raise
        print(f"hpipe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("\nhpipe: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `hpipe runs --csv | head -1`: the reader has all it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no error at exit's flush)
        sys.exit(141)
    sys.exit(code)


if __name__ == "__main__":
    main()
