"""Every command's help says what it does and shows one example."""

from __future__ import annotations

from typing import Any

import typer
from conftest import Project


def leaf_commands() -> dict[str, Any]:
    from hangar_pipe.cli import app

    def walk(cmd: Any, path: str) -> dict[str, Any]:
        if getattr(cmd, "commands", None):  # a group (typer brings its own click)
            found: dict[str, Any] = {}
            for name, sub in cmd.commands.items():
                found.update(walk(sub, f"{path} {name}".strip()))
            return found
        return {path: cmd}

    return walk(typer.main.get_command(app), "")


def test_every_command_has_an_example() -> None:
    commands = leaf_commands()
    assert {"repro", "status", "commit", "init", "runs", "gc", "metrics show", "params diff"} <= set(commands)
    missing = [name for name, cmd in commands.items() if "Example: `hpipe " not in (cmd.help or "")]
    assert missing == []


def test_help_is_printed_with_h(project: Project) -> None:
    done = project.hpipe("repro", "-h")
    assert "Example:" in done.out and "hpipe repro train" in done.out
