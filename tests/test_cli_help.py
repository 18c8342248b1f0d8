"""Every command's help says what it does and shows one example."""

from __future__ import annotations

import pytest
from conftest import Project

from hangar_pipe.cli import MODULES, declare
from hangar_pipe.cli.app import COMMANDS, build_parser, run

declare(None)  # every command


def test_every_command_has_an_example() -> None:
    commands = {" ".join(c.path): c for c in COMMANDS}
    assert {"repro", "status", "commit", "init", "runs", "gc", "metrics show", "params diff", "push",
            "remote add", "data pull"} <= set(commands)
    missing = [name for name, cmd in commands.items() if "Example: `hpipe " not in cmd.help]
    assert missing == []


def test_every_option_reaches_its_function() -> None:
    """The declared arguments are the function's parameters, one for one."""
    import inspect

    for cmd in COMMANDS:
        params = list(inspect.signature(cmd.run).parameters)
        parser = build_parser()
        ns = parser.parse_args([*cmd.path, *(["x"] * sum(a.flags[0][0] != "-" and a.kwargs.get("nargs") is None
                                                        for a in cmd.args))])
        assert sorted(k for k in vars(ns) if k in params) == sorted(params), cmd.path


def test_a_bad_number_is_a_usage_error() -> None:
    from hangar_pipe.cli.app import UsageError

    with pytest.raises(UsageError, match=r"-j/--jobs: must be 1 or more, got 0 \(see --help\)"):
        run(["repro", "-j", "0"], declare)
    with pytest.raises(UsageError, match="no such command 'stauts' \\(did you mean 'status'\\?\\)"):
        run(["stauts"], declare)


def test_the_table_of_command_modules_matches_their_declarations() -> None:
    """cli.MODULES (which module a command line imports) names each module's own first words."""
    declared: dict[str, list[str]] = {}
    for cmd in COMMANDS:
        words = declared.setdefault(cmd.run.__module__, [])
        if cmd.path[0] not in words:
            words.append(cmd.path[0])
    assert {m: tuple(w) for m, w in declared.items()} == MODULES


def test_help_is_printed_with_h(project: Project) -> None:
    done = project.hpipe("repro", "-h")
    assert "Example:" in done.out and "hpipe repro train" in done.out


def test_options_may_come_among_the_arguments_and_are_taken_only_as_spelled() -> None:
    from hangar_pipe.cli.app import UsageError, parse

    ns = parse(["-C", "/tmp", "repro", "a", "-f", "b", "-j", "2"], declare)
    assert ns.stages == ["a", "b"] and ns.force and ns.jobs == 2 and str(ns.directory) == "/tmp"
    ns = parse(["metrics", "diff", "lock", "--md", "workspace"], declare)
    assert (ns.a, ns.b, ns.md) == ("lock", "workspace", True)
    with pytest.raises(UsageError, match="unrecognized arguments: --down"):
        parse(["repro", "--down"], declare)


def test_a_bad_hpipe_threads_names_the_variable(project: Project) -> None:
    from conftest import user_error

    project.pipeline("stages:\n  a:\n    cmd: echo a\n")
    line = user_error(project.hpipe("repro", env={"HPIPE_THREADS": "0"}, check=None))
    assert line == "hpipe: error: HPIPE_THREADS: must be 1 or more, got 0"
    assert project.hpipe("repro", "--threads", "1", env={"HPIPE_THREADS": "0"}).code == 0  # the option wins


def test_a_bad_command_line_is_one_line_with_debug_too(project: Project) -> None:
    done = project.hpipe("--debug", "repro", "--bogus", check=2)
    assert done.err.strip() == "hpipe: error: unrecognized arguments: --bogus (see --help)"
