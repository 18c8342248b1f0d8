"""Keep what hpipe manages out of git, as DVC does: `.hpipe/`, every cached output, and a Hangar
repository folder inside the project go into the project's `.gitignore` when a stage is first
recorded. Only in a git work tree; only lines that are missing are added; nothing is removed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hangar_pipe.core.atomic import atomic_write

HEADER = "# added by hpipe: outputs kept in .hpipe/cache (restore them with `hpipe repro`)"


def in_git(root: Path) -> bool:
    """Whether the project lives in a git work tree (a `.git` here or in a parent folder)."""
    return any((folder / ".git").exists() for folder in (root, *root.parents))


def entry(root: Path, path: Path) -> str | None:
    """`/models/model.pt` for a path inside the project; None for one outside it (or the root)."""
    try:
        rel = path.resolve().relative_to(root.resolve()) if path.is_absolute() else path
    except ValueError:
        return None
    return "/" + "".join("\\" + c if c in "*?[]\\" else c for c in rel.as_posix()) if rel.parts else None


def git_ignores(root: Path, entries: list[str]) -> set[str]:
    """Those of the entries git already ignores by some pattern (`/models/` covers
    `/models/model.pt`); none where git cannot say."""
    rels = [e.strip("/") for e in entries]
    try:
        done = subprocess.run(["git", "check-ignore", "--no-index", "--", *rels], cwd=root,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    hits = set(done.stdout.splitlines()) if done.returncode in (0, 1) else set()
    return {e for e, rel in zip(entries, rels, strict=True) if rel in hits}


def ensure_ignored(root: Path, paths: list[Path]) -> list[str]:
    """Add `/.hpipe/` and each path to `root/.gitignore` unless it is listed; the lines added."""
    if not in_git(root):
        return []
    gitignore = root / ".gitignore"
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    listed = {line.strip().rstrip("/") for line in text.splitlines()}
    wanted = ["/.hpipe/", *(e for p in paths if (e := entry(root, p)) is not None)]
    new = [e for e in dict.fromkeys(wanted) if e.rstrip("/") not in listed and e.strip("/") not in listed]
    if not new or not (new := [e for e in new if e not in git_ignores(root, new)]):
        return []
    if text and not text.endswith("\n"):
        text += "\n"
    if HEADER not in text:
        text += ("\n" if text else "") + HEADER + "\n"
    atomic_write(gitignore, (text + "".join(f"{e}\n" for e in new)).encode())
    return new
