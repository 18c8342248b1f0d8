"""The command line's frame on argparse: each CLI module declares its commands with `@command`.

A command is a plain function, its arguments `arg(...)`/`opt(...)` (argparse's own keywords) and
its docstring the help (first line: the summary in `hpipe --help`; an `Example:` line in each).
The parser is built from the declarations on every call, for the invoked command only: argparse
costs ~5 ms, against ~65 ms to import typer (hpipe's earlier frame) and ~40 ms for it to build
every command, on a no-op `hpipe status` now of ~100 ms (docs/benchmarks.md, issue 13 part 6).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from hangar_pipe.errors import UserError, did_you_mean

options: dict[str, Any] = {"debug": False}


class Arg(NamedTuple):
    """One argument or option: argparse's `add_argument(*flags, **kwargs)`. (Here and in Command,
    a NamedTuple, not a dataclass: a dataclass costs ~0.5 ms to define, on every command.)"""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]


def arg(name: str, **kwargs: Any) -> Arg:
    """A positional argument (`nargs="*"` for a list that may be empty)."""
    return Arg((name,), kwargs)


def opt(*flags: str, **kwargs: Any) -> Arg:
    """An option; `flag=True` makes it an on/off switch (default off)."""
    if kwargs.pop("flag", False):
        kwargs.update(action="store_true")
    return Arg(flags, kwargs)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= low."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value
    return parse


class Command(NamedTuple):
    """A command (`path` one word, or a group's word and the command's) and how to call it."""

    path: tuple[str, ...]
    run: Callable[..., Any]
    args: tuple[Arg, ...]

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.run.__doc__ or "")

    @property
    def summary(self) -> str:
        """The first sentence of the help (up to its colon, when long), for `hpipe --help`."""
        first = self.help.split("\n\n")[0].replace("\n", " ").split(". ")[0].rstrip(".")
        return first.split(": ")[0] if len(first) > 80 else first


COMMANDS: list[Command] = []
GROUPS: dict[str, str] = {}  # group word -> its one-line help


def group(name: str, help: str) -> str:
    """Declare a group of commands (`hpipe metrics show`); returns its word."""
    GROUPS[name] = help
    return name


def command(*path: str, args: tuple[Arg, ...] | list[Arg] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a command: `@command("gc", args=[opt("-n", "--dry-run", flag=True, help=...)])`."""
    def declare(run: Callable[..., Any]) -> Callable[..., Any]:
        COMMANDS.append(Command(tuple(path), run, tuple(args)))
        return run
    return declare


def terminal_width() -> int:
    """The terminal's width: $COLUMNS if set, else the tty's; 80 when piped (or unknown).
    (shutil.get_terminal_size's rule, without importing shutil: with bz2 and lzma, ~3 ms of every
    command, as argparse's own formatter would on every `add_argument`.)"""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # (no stdout: AttributeError on None)
        return 80


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_width() - 2)


class Parser(argparse.ArgumentParser):
    """argparse that raises a UsageError (one line, exit 2) instead of printing usage and exiting,
    and takes options only as spelled (`--down` is not `--downstream`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, formatter_class=_Formatter, **kwargs)

    def error(self, message: str) -> Any:
        raise UsageError(_reword(message, self))


class UsageError(UserError):
    """A bad command line: `hpipe: error: ... (see --help)`, exit 2."""

    def __str__(self) -> str:
        return f"{super().__str__()} (see --help)"


def _reword(message: str, parser: argparse.ArgumentParser) -> str:
    """argparse's wording, made hpipe's: a command it does not know gets close names."""
    if message.startswith("argument COMMAND: invalid choice: "):
        word = message.split("'")[1]
        known = [a for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                 for a in action.choices]
        return f"no such command '{word}'{did_you_mean(word, known)}"
    return message.removeprefix("argument ")


def _global_parser() -> Parser:
    """`hpipe`'s own options, before the command word."""
    top = Parser(prog="hpipe", description="Reproducible ML pipelines over versioned Hangar tensor data.")
    top.add_argument("--debug", action="store_true", help="Show tracebacks on errors.")
    top.add_argument("-C", dest="directory", type=Path, metavar="DIR", help="Run as if started in this folder.")
    top.add_argument("--version", action="store_true", help="Print the version and exit.")
    return top


_NO_GLOBALS = {"debug": False, "directory": None, "version": False}  # (`hpipe status`: no parser built)


def build_parser() -> Parser:
    """The whole command line, from the declarations (the CLI modules must be imported): for
    `hpipe --help`, a group's help, and the errors of a command line that names no command."""
    top = _global_parser()
    words = top.add_subparsers(metavar="COMMAND", title="commands", dest="command", parser_class=Parser)
    groups: dict[str, Any] = {}
    for cmd in COMMANDS:
        under = words
        if len(cmd.path) == 2:
            under = groups.get(cmd.path[0]) or _add_group(words, cmd.path[0], groups)
        sub = under.add_parser(cmd.path[-1], help=cmd.summary, description=cmd.help)
        _add_arguments(sub, cmd)
    return top


def _add_arguments(parser: Parser, cmd: Command) -> Parser:
    for a in cmd.args:
        parser.add_argument(*a.flags, **a.kwargs)
    parser.set_defaults(_command=cmd)
    return parser


def _add_group(words: Any, name: str, groups: dict[str, Any]) -> Any:
    parser = words.add_parser(name, help=GROUPS[name].rstrip("."), description=GROUPS[name])
    parser.set_defaults(_help=parser)
    groups[name] = parser.add_subparsers(metavar="COMMAND", title="commands", dest="sub", parser_class=Parser)
    return groups[name]


def _word_at(argv: list[str]) -> int | None:
    """Where the command word of a command line is (after the global options), or None."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-C":
            i += 2
        elif a in ("--debug", "--version") or a.startswith("-C"):
            i += 1
        else:
            return None if a.startswith("-") else i
    return None


def _named(argv: list[str], at: int | None) -> tuple[Command, int] | None:
    """The declared command a command line names, and where its own arguments start."""
    if at is None:
        return None
    for cmd in COMMANDS:
        if tuple(argv[at:at + len(cmd.path)]) == cmd.path:
            return cmd, at + len(cmd.path)
    return None


def parse(argv: list[str], declare: Callable[[str | None], None]) -> argparse.Namespace:
    """The command line parsed; `declare(word)` imports the modules that declare the word's
    commands (all, for None). A command's options may come anywhere among its arguments
    (`hpipe repro a -f b`); only the command's own parser is built (~1 ms, not ~5)."""
    at = _word_at(argv)
    declare(argv[at] if at is not None else None)
    named = _named(argv, at)
    if named is None:  # `hpipe`, `hpipe --help`, `hpipe metrics`, a word no module declares
        declare(None)
        return build_parser().parse_args(argv)
    cmd, start = named
    ns = _global_parser().parse_args(argv[:at]) if at else argparse.Namespace(**_NO_GLOBALS)
    own = _add_arguments(Parser(prog=f"hpipe {' '.join(cmd.path)}", description=cmd.help), cmd)
    rest = argv[start:]  # (intermixing formats the usage first, ~1 ms: only when there is any)
    vars(ns).update(vars(own.parse_intermixed_args(rest) if rest else own.parse_args(rest)))
    return ns


def run(argv: list[str], declare: Callable[[str | None], None]) -> int:
    """Parse argv and run the command it names; its exit code (SystemExit passes through)."""
    ns = parse(argv, declare)
    options["debug"] = ns.debug
    if ns.debug:  # stage processes too: a `uses:` stage then shows the traceback of its error
        os.environ["HPIPE_DEBUG"] = "1"
    if ns.version:
        from hangar_pipe import __version__

        print(f"hpipe {__version__}")
        return 0
    cmd: Command | None = getattr(ns, "_command", None)
    if cmd is None:  # `hpipe`, `hpipe metrics`: the help
        (getattr(ns, "_help", None) or build_parser()).print_help(sys.stderr)
        return 2
    if ns.directory is not None:
        try:
            os.chdir(ns.directory)
        except OSError as exc:
            raise UserError(f"cannot change to folder: {exc.strerror}", file=str(ns.directory)) from None
    code = cmd.run(**{_dest(a): getattr(ns, _dest(a)) for a in cmd.args})
    return code if isinstance(code, int) else 0


def _dest(a: Arg) -> str:
    if "dest" in a.kwargs:
        return str(a.kwargs["dest"])
    long = next((f for f in a.flags if f.startswith("--")), a.flags[0])
    return long.lstrip("-").replace("-", "_")


def confirm(question: str) -> bool:
    """Ask on the terminal; no answer (stdin closed) is no."""
    print(f"{question} [y/N]: ", end="", flush=True)
    answer = sys.stdin.readline()
    if not answer:
        print()
    return answer.strip().lower() in ("y", "yes")

