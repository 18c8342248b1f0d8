"""An experiment point's workspace: a copy of the project under `.hpipe/exps/`, sharing its caches.

The copy holds the project's files as they are, with the point's params written in, so the
user's files, outputs and pipeline.lock are never touched. Left out of it: hpipe's state and
version-control folders, virtual environments and tool caches, and the outputs the stages cache
(a run restores those it needs from the shared cache, or makes them). Shared with the project,
through links inside `.hpipe/`: the object cache and run cache (`cache/`), the run history
(`runs.db`), the cached Hangar columns (`columns/`) and column fingerprints; a Hangar repository
(`.hangar`) is a link too: a point reads it at a pinned commit and never writes it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash

from hangar_pipe.core import layout
from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.objects import clone_or_copy
from hangar_pipe.core.params import load_params, params_format
from hangar_pipe.core.spec import PipelineSpec
from hangar_pipe.core.yamlfile import dump
from hangar_pipe.errors import UserError
from hangar_pipe.experiments.plan import Overrides

SKIPPED = {layout.STATE_DIR, ".git", ".hg", ".svn", ".dvc", "__pycache__", ".mypy_cache",
           ".pytest_cache", ".ruff_cache", "node_modules"}
SHARED = ("cache", "runs.db", "columns", "hangar-fingerprints.json")  # under .hpipe/: links to the project's


def cached_outputs(spec: PipelineSpec) -> set[str]:
    """Project paths of the outputs the stages cache (restored, not copied)."""
    return {p for stage in spec.stages.values() for o in stage.outs if o.cached for p in o.path_edges}


def make(spec: PipelineSpec, where: Path, overrides: Overrides) -> Path:
    """Build the point's workspace at `where` (anything left there is replaced) and return it."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    for entry in walk(spec.root, cached_outputs(spec)):
        _place(entry, spec.root, where)
    _link_state(spec.root, where)
    for file, values in overrides.items():
        write_overrides(where / file, file, values)
    return where


def digest(spec: PipelineSpec) -> str:
    """What the workspaces are copied from, as a digest of every file's path, size and modification
    time (and every link's target): a point recorded under another digest ran on other files."""
    h = xxhash.xxh3_64()
    for rel, kind, src in walk(spec.root, cached_outputs(spec)):
        if kind == "file":
            st = os.stat(src)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        elif kind == "link":
            h.update(f"{rel}\0->{os.readlink(src)}\n".encode())
    return h.hexdigest()


Entry = tuple[str, str, str]  # (project path, "dir" | "file" | "link" | "hangar", source path)


def walk(root: Path, leave_out: set[str]) -> Iterator[Entry]:
    """The project's entries a workspace holds, folders before what they hold (see the module's
    docstring for what is left out); links and Hangar repositories are not entered."""
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        dirs[:] = [d for d in dirs if d not in SKIPPED and f"{rel}{d}" not in leave_out
                   and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))]
        for d in dirs:
            src = os.path.join(folder, d)
            yield f"{rel}{d}", "link" if os.path.islink(src) else "hangar" if d == ".hangar" else "dir", src
        dirs[:] = [d for d in dirs if d != ".hangar" and not os.path.islink(os.path.join(folder, d))]
        for name in files:
            if f"{rel}{name}" not in leave_out:
                src = os.path.join(folder, name)
                yield f"{rel}{name}", "link" if os.path.islink(src) else "file", src


def _place(entry: Entry, root: Path, ws: Path) -> None:
    rel, kind, src = entry
    target = ws / rel
    if kind == "dir":
        target.mkdir(exist_ok=True)
    elif kind == "file":
        clone_or_copy(src, target)
    elif kind == "hangar":  # a Hangar repository: read at a pinned commit, never written
        os.symlink(src, target)
    else:
        os.symlink(_link_target(src, root, ws), target)


def _link_target(link: str, root: Path, ws: Path) -> str:
    """Where a copied link points: into the workspace for a target inside the project (so a point
    never reaches the project's own files through it), else to the same place, made absolute."""
    text = os.readlink(link)
    resolved = Path(os.path.normpath(os.path.join(os.path.dirname(link), text)))
    try:
        inside = resolved.relative_to(root)
    except ValueError:
        return str(resolved)  # outside the project: the same file (a relative link would move)
    if not os.path.isabs(text):
        return text  # relative, and inside: the same relative link works in the copy
    return str(ws / inside)


def _link_state(root: Path, ws: Path) -> None:
    state = layout.state_dir(ws)
    state.mkdir(exist_ok=True)
    main = layout.state_dir(root)
    for name in SHARED:
        if name in ("cache", "columns"):
            (main / name).mkdir(parents=True, exist_ok=True)
        os.symlink(main / name, state / name)


def check_overrides(root: Path, overrides: Overrides) -> None:
    """Whether these overrides can be written (the files and keys exist); a UserError if not."""
    for file, values in overrides.items():
        _overridden(root / file, file, values)


def write_overrides(path: Path, file: str, values: dict[str, Any]) -> None:
    """Set dotted keys in a params file (YAML or JSON); an unknown key is an error."""
    data = _overridden(path, file, values)
    text = dump(data) if params_format(file) == "YAML" else json.dumps(data, indent=2) + "\n"
    atomic_write(path, text.encode())


def _overridden(path: Path, file: str, values: dict[str, Any]) -> dict[str, Any]:
    fmt = params_format(file)
    if fmt not in ("YAML", "JSON"):
        raise UserError(f"-S {file}: can set keys of YAML and JSON params files only (this is"
                        f" {fmt or 'not a params file'})")
    data = load_params(path, file) if path.is_file() else None
    if not isinstance(data, dict):
        raise UserError(f"-S {file}: the params file is {'missing' if data is None else 'not a mapping'}")
    for key, value in values.items():
        _set(data, key, value, file)
    return data


def _set(data: dict[str, Any], key: str, value: Any, file: str) -> None:
    from hangar_pipe.errors import did_you_mean

    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the top"
            known = list(node) if isinstance(node, dict) else []
            raise UserError(f"-S {key}: {file} has no key '{part}' under {where}"
                            f"{did_you_mean(part, known)}")
        if i == len(parts) - 1:
            node[part] = value
        node = node[part]
