"""The command line's frame on argparse: each CLI module declares its commands with `@command`.

A command is a plain function, its arguments `arg(...)`/`opt(...)` (argparse's own keywords) and
its docstring the help (first line: the summary in `hpipe --help`; an `Example:` line in each).
The parser is built from the declarations on every call: argparse costs a few milliseconds,
against ~65 ms to import typer (hpipe's earlier frame) and ~40 ms for it to build the commands,
on a no-op `hpipe status` of ~150 ms (docs/benchmarks.md, issue 13 part 6).
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


class Parser(argparse.ArgumentParser):
    """argparse that raises a UsageError (one line, exit 2) instead of printing usage and exiting."""

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


_FORMAT = argparse.RawDescriptionHelpFormatter


def build_parser(word: str | None = None) -> Parser:
    """The command line, from the declarations (the CLI modules must be imported): every command,
    or those under one first word (a command line runs one; argparse's set-up is ~0.1 ms each)."""
    top = Parser(prog="hpipe", description="Reproducible ML pipelines over versioned Hangar tensor data.",
                 formatter_class=_FORMAT)
    top.add_argument("--debug", action="store_true", help="Show tracebacks on errors.")
    top.add_argument("-C", dest="directory", type=Path, metavar="DIR", help="Run as if started in this folder.")
    top.add_argument("--version", action="store_true", help="Print the version and exit.")
    words = top.add_subparsers(metavar="COMMAND", title="commands", dest="command", parser_class=Parser)
    groups: dict[str, Any] = {}
    for cmd in COMMANDS:
        if word is not None and cmd.path[0] != word:
            continue
        under = words
        if len(cmd.path) == 2:
            under = groups.get(cmd.path[0]) or _add_group(words, cmd.path[0], groups)
        sub = under.add_parser(cmd.path[-1], help=cmd.summary, description=cmd.help, formatter_class=_FORMAT)
        for a in cmd.args:
            sub.add_argument(*a.flags, **a.kwargs)
        sub.set_defaults(_command=cmd)
    return top


def _add_group(words: Any, name: str, groups: dict[str, Any]) -> Any:
    parser = words.add_parser(name, help=GROUPS[name].rstrip("."), description=GROUPS[name], formatter_class=_FORMAT)
    parser.set_defaults(_help=parser)
    groups[name] = parser.add_subparsers(metavar="COMMAND", title="commands", dest="sub", parser_class=Parser)
    return groups[name]


def _first_word(argv: list[str]) -> str | None:
    """The command word of a command line (after the global options), or None."""
    args = iter(argv)
    for a in args:
        if a == "-C":
            next(args, None)
        elif a not in ("--debug", "--version") and not a.startswith("-C"):
            return None if a.startswith("-") else a
    return None


def run(argv: list[str], declare: Callable[[str | None], None]) -> int:
    """Parse argv and run the command it names; its exit code (SystemExit passes through).
    `declare(word)` imports the modules that declare the word's commands (all, for None)."""
    word = _first_word(argv)
    declare(word)
    if not any(cmd.path[0] == word for cmd in COMMANDS):
        word = None  # a word no module declares: the whole command line, to say so
    parser = build_parser(word)
    ns = parser.parse_args(argv)
    options["debug"] = ns.debug
    if ns.debug:  # stage processes too: a `uses:` stage then shows the traceback of its error
        os.environ["HPIPE_DEBUG"] = "1"
    if ns.version:
        from hangar_pipe import __version__

        print(f"hpipe {__version__}")
        return 0
    cmd: Command | None = getattr(ns, "_command", None)
    if cmd is None:  # `hpipe`, `hpipe metrics`: the help
        getattr(ns, "_help", parser).print_help(sys.stderr)
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

