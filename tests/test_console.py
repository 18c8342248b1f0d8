"""What `hpipe repro` and `status` print: one screen line per stage, -q and -v, colour on a
terminal only."""

from __future__ import annotations

import os
import pty
import subprocess

from conftest import ENV, HPIPE, Project

from hangar_pipe.cli.console import Style, use_colour

LONG_KEYS = " ".join(f"k{i}_with_a_rather_long_name: {i}" for i in range(8))


def long_reasons(project: Project) -> Project:
    """A stage whose reasons, written in full, take far more than one line."""
    project.write("params.yaml", "p: {" + LONG_KEYS.replace(" k", ", k") + "}\n")
    project.write("input_with_a_long_name_number_one.txt", "1\n")
    project.write("input_with_a_long_name_number_two.txt", "2\n")
    project.pipeline("""
        stages:
          s:
            cmd: cat input_with_a_long_name_number_one.txt input_with_a_long_name_number_two.txt > out.txt
            deps: [input_with_a_long_name_number_one.txt, input_with_a_long_name_number_two.txt]
            params: [p]
            outs: [out.txt]
    """)
    project.hpipe("repro")
    project.write("params.yaml", "p: {" + LONG_KEYS.replace(": ", ": 1").replace(" k", ", k") + "}\n")
    project.write("input_with_a_long_name_number_one.txt", "3\n")
    project.write("input_with_a_long_name_number_two.txt", "4\n")
    return project


def test_reason_lines_fit_one_screen_line_and_verbose_has_all(project: Project) -> None:
    long_reasons(project)
    short = project.hpipe("status").out.splitlines()
    assert len(short) == 1 and len(short[0]) <= 80, short
    assert short[0].startswith("• s: would run (changed deps: input_with_a_long_name_number_one.txt")
    full = project.hpipe("status", "-v").out
    assert len(full.splitlines()[0]) > 200
    assert all(f"p.k{i}_with_a_rather_long_name (modified)" in full for i in range(8))
    wide = subprocess.run([*HPIPE, "status"], cwd=project.root, capture_output=True, text=True,
                          env={**ENV, "COLUMNS": "1000"}).stdout
    assert wide.strip() == full.strip(), "a wide terminal shows it all"


def test_repro_says_why_once_and_fits_the_line(project: Project) -> None:
    long_reasons(project)
    done = project.hpipe("repro")
    lines = done.out.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("→ s: running (changed deps: ")
    assert lines[1].startswith("✓ s: ran in ") and "changed" not in lines[1], "the reasons are not repeated"


def test_quiet_repro_prints_only_failures(project: Project) -> None:
    project.pipeline("""
        stages:
          good: {cmd: echo hello > good.txt, outs: [good.txt]}
          bad: {cmd: exit 3, deps: [good.txt]}
    """)
    done = project.hpipe("repro", "-q", "good")
    assert done.out == "", "nothing from hpipe when all is well"
    failed = project.hpipe("repro", "-q", check=1)
    assert [line for line in failed.out.splitlines() if line.startswith("✗ bad: failed")], failed.out
    assert "→" not in failed.out and "good" not in failed.out
    assert "stage 'bad' failed" in failed.out


def test_status_verbose_lists_every_stage(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    assert three_stage.hpipe("status").out == "Everything is up to date.\n"
    lines = three_stage.hpipe("status", "-v").out.splitlines()
    assert lines[:3] == ["· prepare: up to date, skipped", "· train: up to date, skipped",
                         "· evaluate: up to date, skipped"]


def run_in_terminal(project: Project, *args: str, **env: str) -> str:
    """Run hpipe with a pseudo-terminal as stdout, as a user's shell would."""
    main, child = pty.openpty()
    full_env = {k: v for k, v in ENV.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    proc = subprocess.Popen([*HPIPE, *args], cwd=project.root, stdout=child, stderr=child,
                            env={**full_env, "TERM": "xterm", **env})
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(main)
    return b"".join(chunks).decode()


def test_state_lines_have_colour_on_a_terminal_only(three_stage: Project) -> None:
    three_stage.write("raw.txt", "5\n")
    assert "\033[33m• prepare:\033[0m would run" in run_in_terminal(three_stage, "status")
    assert "\033[" not in run_in_terminal(three_stage, "status", NO_COLOR="1")
    assert "\033[" not in three_stage.hpipe("status").out, "plain when piped"
    ran = run_in_terminal(three_stage, "repro")
    assert "\033[32m✓ prepare:\033[0m ran in" in ran


def test_colour_choice(monkeypatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    assert use_colour(Stream(True)) and not use_colour(Stream(False))
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(Stream(True))
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Stream(True))
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert use_colour(Stream(False))
    plain = Style(colour=False).line("ran", "train", "ran in 1.00s", {}, None)
    assert plain == "✓ train: ran in 1.00s"
    assert Style(colour=True).line("failed", "t", "failed", {}, None) == "\033[31m✗ t:\033[0m failed"
