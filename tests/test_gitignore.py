"""What hpipe keeps stays out of git: `.hpipe/`, cached outputs and an in-project Hangar
repository go into .gitignore when a stage is first recorded (DVC's rule)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import Project

from hangar_pipe.core.gitignore import HEADER, ensure_ignored


def git(project: Project, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project.root, capture_output=True, text=True,
                          check=True).stdout


def test_outputs_are_ignored_when_first_recorded(three_stage: Project) -> None:
    git(three_stage, "init", "-q")
    three_stage.write(".gitignore", "*.log\n")
    three_stage.pipeline(three_stage.read("pipeline.yaml").replace(
        "metrics: [metrics.json]", "metrics: [{metrics.json: {cache: false}}]"))
    three_stage.hpipe("repro", "prepare")
    assert three_stage.read(".gitignore") == f"*.log\n\n{HEADER}\n/.hpipe/\n/data/clean.txt\n"
    three_stage.hpipe("repro")
    lines = three_stage.read(".gitignore").splitlines()
    assert lines == ["*.log", "", HEADER, "/.hpipe/", "/data/clean.txt", "/model.txt"]
    untracked = git(three_stage, "status", "--porcelain", "--untracked-files=all").split("\n")
    assert "?? metrics.json" in untracked, "a `cache: false` output is the user's to commit"
    assert not [u for u in untracked if "model.txt" in u or "clean.txt" in u or ".hpipe" in u]
    three_stage.hpipe("repro", "-f")
    assert three_stage.read(".gitignore").splitlines() == lines, "nothing added twice"


def test_nothing_is_written_outside_git(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    assert not three_stage.exists(".gitignore")


def test_a_commit_and_a_restore_also_ignore(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("raw.txt", "7\n")
    three_stage.hpipe("repro")
    git(three_stage, "init", "-q")
    three_stage.write("raw.txt", "1\n2\n3\n")
    assert "↺ prepare: restored" in three_stage.hpipe("repro", "prepare").out
    assert three_stage.read(".gitignore").splitlines()[-2:] == ["/.hpipe/", "/data/clean.txt"]
    three_stage.write("model.txt", "hand-made")
    assert "Recorded train" in three_stage.hpipe("commit", "train").out
    assert three_stage.read(".gitignore").splitlines()[-1] == "/model.txt"


def test_ensure_ignored_respects_what_is_listed(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text(".hpipe\nmodel.pt/\n/data")  # no final newline
    added = ensure_ignored(tmp_path, [tmp_path / "model.pt", tmp_path / "data", tmp_path / "out" / "x.bin",
                                      tmp_path.parent / "elsewhere.txt", tmp_path])
    assert added == ["/out/x.bin"]
    assert (tmp_path / ".gitignore").read_text() == f".hpipe\nmodel.pt/\n/data\n\n{HEADER}\n/out/x.bin\n"
    assert ensure_ignored(tmp_path, [tmp_path / "out" / "x.bin"]) == []
    sub = tmp_path / "sub"
    sub.mkdir()
    assert ensure_ignored(sub, [sub / "m.pt"]) == ["/.hpipe/", "/m.pt"], "a project inside a git work tree"


def test_what_a_pattern_already_ignores_is_not_added(three_stage: Project) -> None:
    git(three_stage, "init", "-q")
    three_stage.write(".gitignore", ".hpipe/\n/data/\n*.txt\n*.json\n!raw.txt\n")
    three_stage.hpipe("repro")
    assert three_stage.read(".gitignore") == ".hpipe/\n/data/\n*.txt\n*.json\n!raw.txt\n", "all covered already"


def test_glob_characters_in_output_names_are_escaped(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert ensure_ignored(tmp_path, [tmp_path / "[x].txt", tmp_path / "a*b?"]) == [
        "/.hpipe/", "/\\[x\\].txt", "/a\\*b\\?"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for name in ("[x].txt", "x.txt", "a*b?"):
        (tmp_path / name).write_text("")
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "[x].txt", "x.txt", "a*b?"], cwd=tmp_path,
                             capture_output=True, text=True).stdout.split()
    assert ignored == ["[x].txt", "a*b?"], "x.txt is not matched by [x].txt's line"
