"""pipeline.yaml: parse and validate into typed stage definitions, every error with file, line and key."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import posixpath
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hangar_pipe.core import kinds, yamlfile
from hangar_pipe.core.files import CodeDep, PathDep, PathOut
from hangar_pipe.core.kinds import Kind
from hangar_pipe.core.layout import PARAMS_FILE, parsed_yaml
from hangar_pipe.core.params import FORMATS, ParamsDep, Where, load_params, params_format
from hangar_pipe.core.yamlfile import KeyPath, YamlDoc, keypath_str, load_yaml
from hangar_pipe.errors import UserError, did_you_mean

STAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

#: Built-in stages for `uses: NAME` (no colon): name -> "module:callable". Filled by
#: hangar_pipe.plugins from the list beside the stages (hangar_pipe.stages.BUILTIN).
BUILTIN_STAGES: dict[str, str] = {}
#: Built-in stage name -> the files it reads, from its `with:` ({key: [paths]}): tracked as deps.
BUILTIN_INPUTS: dict[str, Callable[[dict[str, Any]], dict[str, list[str]]]] = {}
#: Built-in stage name -> the modules of the user's code it imports, named in its params (the
#: train stage's `model.module`): tracked as code deps. Called with `with:` and a reader of the
#: stage's params files (path relative to its wdir -> data, None if unreadable), read only then.
BUILTIN_CODE: dict[str, Callable[[dict[str, Any], Callable[[str], Any]], list[str]]] = {}
#: Built-in stage name -> a check of the stage as parsed: (its `with:` key, what is wrong) or None.
BUILTIN_CHECKS: dict[str, Callable[[Stage], tuple[str, str] | None]] = {}
#: Built-in stages that update their data outputs from a record of their own (the map stage): they
#: get HPIPE_STAGE_INPUTS, what their run key is made of, to key that record; and `repro --verify`
#: reruns them to check their outputs, writing nothing (other writers of data it does not rerun).
BUILTIN_INCREMENTAL: set[str] = set()
#: Built-in stage name -> "module:function(stage, reasons, measured, workspace) -> reasons": words
#: the reasons a stage would run in its own terms (the map stage: samples changed). Imported only
#: when such a stage is out of date.
BUILTIN_EXPLAIN: dict[str, str] = {}

_TOP_KEYS = {"data": dict, "stages": dict, "vars": list}
_TEMPLATE_KEYS = {"foreach", "do", "matrix", "vars"}
_DATA_KEYS = {"repo": str, "ref": str, "remote": str}
#: `data.remote`: the `host:port` of a `hangar server` (a name, IPv4, or [IPv6] host; no scheme).
ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
_STAGE_KEYS: dict[str, type | tuple[type, ...]] = {
    "desc": str, "cmd": (str, list), "uses": str, "with": dict, "wdir": str,
    "deps": list, "params": list, "outs": list, "metrics": list, "plots": list,
    "always_changed": bool, "frozen": bool,
}
_OUT_OPTIONS = {"cache": bool, "persist": bool, "desc": str}
_TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping", bool: "true or false"}


@dataclass(frozen=True)
class DataDefaults:
    """The `data:` section: the Hangar repo (relative to the project) and ref stages read by default."""

    repo: str = "."
    ref: str | None = None
    remote: str | None = None  # host:port of a `hangar server` (`hpipe data push`/`pull`)


@dataclass
class Stage:
    """One stage of pipeline.yaml as parsed: a `cmd` or a built-in (`uses`), and its inputs and outputs."""

    name: str
    cmd: str | list[str] | None
    uses: str | None
    with_: dict[str, Any]
    wdir: str  # relative to the project root, "." for the root itself
    deps: list[Kind]
    params: list[ParamsDep]
    outs: list[Kind]
    desc: str | None = None
    always_changed: bool = False
    frozen: bool = False
    line: int | None = None
    declared: dict[Kind, KeyPath] = field(default_factory=dict)  # each dep and out -> where it is declared

    @property
    def target(self) -> str | None:
        """`uses` resolved to 'module:callable' (built-in names expanded)."""
        return None if self.uses is None else BUILTIN_STAGES.get(self.uses, self.uses)

    def definition(self) -> dict[str, Any]:
        """The stage's own fields as recorded in the lock (command, callable, kwargs, wdir)."""
        d: dict[str, Any] = {"cmd": self.cmd} if self.cmd is not None else {
            "uses": self.uses, "with": self.with_}
        if self.wdir != ".":
            d["wdir"] = self.wdir
        return d

    def all_deps(self) -> list[Kind | ParamsDep]:
        return [*self.deps, *self.params]


@dataclass
class PipelineSpec:
    """pipeline.yaml as parsed: its stages in file order, and the data defaults."""

    root: Path
    file: str
    data: DataDefaults
    doc: YamlDoc
    stages: dict[str, Stage] = field(default_factory=dict)


@dataclass
class SpecContext:
    """Passed to kind parsers: the document (for errors), the root, the stage being parsed."""

    doc: YamlDoc
    root: Path
    wdir: str
    data: DataDefaults

    def error(self, path: KeyPath, message: str, at: KeyPath | None = None) -> UserError:
        return self.doc.error(path, message, at)

    def path(self, value: Any, keypath: KeyPath) -> str:
        """A path relative to the stage's wdir, normalised to a project-relative posix path."""
        if not isinstance(value, str) or not value.strip():
            raise self.error(keypath, "expected a non-empty path string")
        return normalize_path(self, value, keypath)


def normalize_path(ctx: SpecContext, value: str, keypath: KeyPath) -> str:
    if os.path.isabs(value):
        try:
            relative = os.path.relpath(value, ctx.root)
        except ValueError:
            raise ctx.error(keypath, f"path '{value}' is outside the project") from None
        joined = posixpath.normpath(relative.replace(os.sep, "/"))
    else:
        joined = posixpath.normpath(posixpath.join(ctx.wdir, value))
    if joined == ".." or joined.startswith("../"):
        raise ctx.error(keypath, f"path '{value}' is outside the project")
    return joined


def _check_keys(doc: YamlDoc, value: dict[str, Any], allowed: dict[str, Any], path: KeyPath) -> None:
    for key, item in value.items():
        if key not in allowed:
            raise doc.error(path, f"unknown key '{key}'{did_you_mean(str(key), list(allowed))}",
                            at=path + (key,))
        expected = allowed[key]
        if not isinstance(item, expected) or (expected is not bool and isinstance(item, bool)):
            types = expected if isinstance(expected, tuple) else (expected,)
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise doc.error(path + (key,), f"expected {want}, got {type(item).__name__}")


def load_pipeline(path: Path) -> PipelineSpec:
    """Read and validate pipeline.yaml (path to the file)."""
    root = path.parent.resolve()
    yamlfile.use_cache(root, parsed_yaml(root))  # this project's YAML files: parsed once per content
    doc = load_yaml(path, path.name)
    top = doc.data
    if top is None:
        top = {}
    if not isinstance(top, dict):
        raise doc.error((), "expected a mapping with a 'stages' key")
    _check_keys(doc, top, _TOP_KEYS, ())
    data_raw = top.get("data") or {}
    _check_keys(doc, data_raw, _DATA_KEYS, ("data",))
    for key, what in (("repo", "a folder path"), ("ref", "a branch name or commit digest")):
        if key in data_raw and not data_raw[key].strip():
            raise doc.error(("data", key), f"expected {what}, got an empty string")
    repo = posixpath.normpath(data_raw.get("repo", ".").replace(os.sep, "/"))
    remote = data_raw.get("remote")
    if remote is not None:
        remote = _check_address(doc, remote)
    data = DataDefaults(repo=repo, ref=data_raw.get("ref"), remote=remote)
    for name in top.get("stages") or {}:
        if not isinstance(name, str) or not STAGE_NAME.match(name):
            raise doc.error(("stages", name), f"invalid stage name '{name}' (letters, digits, _ . -)")
    if _templated(top):
        from hangar_pipe.core import template

        doc = template.expand(doc, root)
        top = doc.data
    spec = PipelineSpec(root, path.name, data, doc)
    for name, body in (top.get("stages") or {}).items():
        spec.stages[name] = _parse_stage(doc, root, data, name, body, ("stages", name))
    return spec


def _templated(top: dict[str, Any]) -> bool:
    """Whether pipeline.yaml uses a template form (`vars`, `foreach`, `matrix`, `${...}`; see
    core/template.py). Cheap, so that a plain pipeline does not import the template module."""
    stages = top.get("stages") or {}
    return ("vars" in top or any(isinstance(body, dict) and not _TEMPLATE_KEYS.isdisjoint(body)
                                 for body in stages.values())
            or "${" in json.dumps(stages, default=str))


def _check_address(doc: YamlDoc, value: str) -> str:
    """`data.remote` must be `host:port` (port 1-65535), without a scheme or path."""
    match = ADDRESS.match(value.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        hint = " (no scheme: give host:port)" if "://" in value else ""
        raise doc.error(("data", "remote"), f"expected host:port of a hangar server, such as"
                                            f" localhost:50051, got '{value}'{hint}")
    return value.strip()


def _parse_stage(doc: YamlDoc, root: Path, data: DataDefaults, name: str, body: Any,
                 keypath: KeyPath) -> Stage:
    if not isinstance(body, dict):
        raise doc.error(keypath, "expected a mapping with 'cmd' or 'uses'")
    _check_keys(doc, body, _STAGE_KEYS, keypath)
    if ("cmd" in body) == ("uses" in body):
        raise doc.error(keypath, "a stage needs exactly one of 'cmd' or 'uses'")
    if "with" in body and "uses" not in body:
        raise doc.error(keypath + ("with",), "'with' gives arguments to 'uses'; this stage has 'cmd'")
    try:
        json.dumps(body.get("with", {}))
    except (TypeError, ValueError) as exc:
        raise doc.error(keypath + ("with",), f"values must be plain data (numbers, strings, lists,"
                                             f" mappings): {exc}") from None
    cmd = body.get("cmd")
    if isinstance(cmd, list) and (not cmd or not all(isinstance(c, str) and c.strip() for c in cmd)):
        raise doc.error(keypath + ("cmd",), "expected a non-empty list of command strings")
    if isinstance(cmd, str) and not cmd.strip():
        raise doc.error(keypath + ("cmd",), "the command is empty")
    ctx = SpecContext(doc, root, ".", data)
    wdir = ctx.path(body["wdir"], keypath + ("wdir",)) if "wdir" in body else "."
    ctx.wdir = wdir

    declared: dict[Kind, KeyPath] = {}
    deps: list[Kind] = [_parse_entry(ctx, e, keypath + ("deps", i), False)
                        for i, e in enumerate(body.get("deps", []))]
    declared.update((d, keypath + ("deps", i)) for i, d in enumerate(deps))
    outs: list[Kind] = []
    for section, role in (("outs", "out"), ("metrics", "metric"), ("plots", "plot")):
        for i, entry in enumerate(body.get(section, [])):
            outs.append(_parse_entry(ctx, entry, keypath + (section, i), True, role))
            declared.setdefault(outs[-1], keypath + (section, i))
    _no_duplicates(doc, deps, keypath + ("deps",))
    _no_duplicates(doc, outs, keypath + ("outs",))
    stage = Stage(name=name, cmd=cmd, uses=body.get("uses"), with_=body.get("with", {}),
                  wdir=wdir, deps=deps, params=_parse_params(ctx, body.get("params", []), keypath),
                  outs=outs, desc=body.get("desc"), always_changed=body.get("always_changed", False),
                  frozen=body.get("frozen", False), line=doc.line(keypath), declared=declared)
    if stage.uses is not None:
        code = _code_dep(ctx, stage, keypath + ("uses",))
        stage.deps.append(code)
        _check_with(ctx, stage, code.source, keypath)
        _add_input_files(ctx, stage, keypath)
        _add_code_modules(ctx, stage, keypath)
        check = BUILTIN_CHECKS.get(stage.uses)
        if check is not None and (problem := check(stage)):
            raise ctx.error(keypath + ("with", problem[0]), problem[1])
    return stage


def _check_with(ctx: SpecContext, stage: Stage, file: str, keypath: KeyPath) -> None:
    """A built-in stage's `with:` keys against its callable's parameters, read from its source
    (nothing is imported): an unknown key or a missing required one is an error at load time."""
    if stage.uses not in BUILTIN_STAGES:
        return
    params = callable_params(file, (stage.target or "").partition(":")[2])
    if params is None:
        return
    accepted, required = params
    for key in stage.with_:
        if key not in accepted:
            raise ctx.error(keypath + ("with", key), f"unknown key for uses: {stage.uses}"
                            f" (known: {', '.join(accepted)}){did_you_mean(str(key), accepted)}")
    absent = [k for k in required if k not in stage.with_]
    if absent:
        raise ctx.error(keypath + ("with",), f"uses: {stage.uses} needs '{absent[0]}' in with:"
                                             f" (known: {', '.join(accepted)})", at=keypath)


def _add_input_files(ctx: SpecContext, stage: Stage, keypath: KeyPath) -> None:
    """A built-in stage's input files, named in its `with:`, become deps (unless listed already)."""
    inputs = BUILTIN_INPUTS.get(stage.uses or "")
    for key, paths in (inputs(stage.with_) if inputs else {}).items():
        for path in paths:
            dep = PathDep(ctx.path(path, keypath + ("with", key)))
            if all(d.key != dep.key for d in stage.deps):
                stage.deps.append(dep)
                stage.declared[dep] = keypath + ("with", key)


def _add_code_modules(ctx: SpecContext, stage: Stage, keypath: KeyPath) -> None:
    """The user modules a built-in stage imports (named in its params) become code deps; one not
    found is left to the stage, which says so when it runs."""
    named = BUILTIN_CODE.get(stage.uses or "")
    if named is None:
        return
    base = ctx.root / stage.wdir

    def read(file: str) -> Any:
        try:
            return load_params(base / file, file)
        except UserError:
            return None

    for module in named(stage.with_, read):
        file = find_module_file(module, [str(base), str(ctx.root)])
        dep = CodeDep(module, file) if file else None
        if dep is not None and all(d.key != dep.key for d in stage.deps):
            stage.deps.append(dep)
            stage.declared[dep] = keypath + ("uses",)


def _parse_entry(ctx: SpecContext, entry: Any, keypath: KeyPath, is_out: bool,
                 role: str = "out") -> Kind:
    if isinstance(entry, str):
        path = ctx.path(entry, keypath)
        return PathOut(path, role=role) if is_out else PathDep(path)
    if isinstance(entry, dict) and len(entry) == 1:
        (key, value), = entry.items()
        if kind := kinds.declared_kind(str(key)):
            return kind.parse(ctx, value, keypath + (key,), is_out)
        if is_out and (value is None or isinstance(value, dict)):  # `- path: {cache: false}`
            options = value or {}
            _check_keys(ctx.doc, options, _OUT_OPTIONS, keypath + (key,))
            return PathOut(ctx.path(key, keypath), role=role, cache=options.get("cache", True),
                           persist=options.get("persist", False))
        if not is_out:
            tags = kinds.declared_tags()
            hint = did_you_mean(str(key), tags) or (f" (known kinds: {', '.join(tags)})" if tags else "")
            raise ctx.error(keypath, f"unknown dependency kind '{key}'{hint}", at=keypath + (key,))
    what = "an output path" if is_out else "a path"
    raise ctx.error(keypath, f"expected {what} or a one-key mapping, got {type(entry).__name__}")


def _no_duplicates(doc: YamlDoc, items: list[Kind], keypath: KeyPath) -> None:
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise doc.error(keypath, f"'{item.key}' is listed twice")
        seen.add(item.key)


@dataclass
class _ParamsFile:
    """One params file's declarations in a stage, as they are parsed."""

    keys: list[tuple[str, Where]] = field(default_factory=list)
    whole: Where | None = None  # where `- file:` (no keys) declares the whole file

    def dep(self, file: str) -> ParamsDep:
        """Tracking the whole file takes in any keys also listed (as DVC)."""
        if self.whole is not None:
            return ParamsDep(file, (), (self.whole,))
        return ParamsDep(file, tuple(k for k, _ in self.keys), tuple(w for _, w in self.keys))


def _parse_params(ctx: SpecContext, entries: list[Any], keypath: KeyPath) -> list[ParamsDep]:
    """`params:`: keys of params.yaml, `{file: [keys]}`, or `{file: }` (no keys) for a whole file."""
    files: dict[str, _ParamsFile] = {}

    def where(kp: KeyPath) -> Where:
        return (ctx.doc.file, ctx.doc.line(kp), keypath_str(kp))

    def add(file: str, key: Any, kp: KeyPath) -> None:
        if not isinstance(key, str) or not key:
            raise ctx.error(kp, "expected a dotted key such as 'train.lr'")
        keys = files.setdefault(file, _ParamsFile()).keys
        if any(k == key for k, _ in keys):
            raise ctx.error(kp, f"param '{key}' is listed twice")
        keys.append((key, where(kp)))

    for i, entry in enumerate(entries):
        kp = keypath + ("params", i)
        if isinstance(entry, str):
            add(PARAMS_FILE, entry, kp)
        elif isinstance(entry, dict):
            for file, keys in entry.items():
                rel = _params_path(ctx, file, kp + (file,))
                if keys is None or keys == []:
                    declared = files.setdefault(rel, _ParamsFile())
                    if declared.whole is not None:
                        raise ctx.error(kp + (file,), f"params file '{file}' is listed twice")
                    declared.whole = where(kp + (file,))
                elif isinstance(keys, list):
                    for j, key in enumerate(keys):
                        add(rel, key, kp + (file, j))
                else:
                    raise ctx.error(kp + (file,), f"expected a list of keys in {file}, or none"
                                                  " for the whole file")
        else:
            raise ctx.error(kp, "expected a key, {file: [keys]} or {file: } for a whole file")
    return [declared.dep(file) for file, declared in files.items()]


def _params_path(ctx: SpecContext, file: Any, kp: KeyPath) -> str:
    """A params file's project path; its suffix must name a format hpipe reads."""
    rel = ctx.path(file, kp)
    if params_format(rel) is None:
        raise ctx.error(kp, f"params file '{file}': unsupported type"
                            f" (use {', '.join(FORMATS)})")
    return rel


def _code_dep(ctx: SpecContext, stage: Stage, keypath: KeyPath) -> CodeDep:
    """Find the module file of `uses: module:callable` without importing it, and check the callable."""
    target = stage.target or ""
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN_STAGES)) or "none yet"
        raise ctx.error(keypath, f"'{target}' is neither 'module:callable' nor a built-in stage"
                                 f" (built-ins: {known}){did_you_mean(target, list(BUILTIN_STAGES))}")
    module, _, attr = target.partition(":")
    file = find_module_file(module, [str(ctx.root / stage.wdir), str(ctx.root)])
    if file is None:
        raise ctx.error(keypath, f"cannot import module '{module}' for '{target}'")
    if not attr.isidentifier() or not _defines(file, attr):
        raise ctx.error(keypath, f"module '{module}' ({file}) has no callable '{attr}'")
    return CodeDep(module, file)


def find_module_file(module: str, extra_paths: list[str]) -> str | None:
    """The .py file of a module, looked up on the paths without executing any package code."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    for base in [*extra_paths, *sys.path]:
        stem = os.path.join(base or ".", *parts)
        for candidate in (stem + ".py", os.path.join(stem, "__init__.py")):
            if os.path.isfile(candidate):
                return os.path.abspath(candidate)
    try:  # compiled or zipped modules: let importlib find it (imports parent packages)
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return found.origin if found and found.origin and os.path.isfile(found.origin) else None


def _module_tree(file: str) -> ast.Module | None:
    """A Python source file's syntax tree, parsed once per version of the file; None if unreadable."""
    try:
        st = os.stat(file)
    except OSError:
        return None
    return _parse_source(file, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _parse_source(file: str, mtime_ns: int, size: int) -> ast.Module | None:
    try:
        with open(file, "rb") as fh:
            return ast.parse(fh.read(), file)
    except (OSError, SyntaxError, ValueError):
        return None


def callable_params(file: str, name: str) -> tuple[list[str], list[str]] | None:
    """(keyword parameters, required ones) of the top-level function `name` in a source file, read
    without importing it; None when they cannot be known (not found, not Python, `**kwargs`)."""
    tree = _module_tree(file) if file.endswith(".py") else None
    func = next((n for n in _top_level(tree.body) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == name), None) if tree else None
    if func is None or func.args.kwarg is not None:
        return None
    args = func.args
    required = [a.arg for a in args.args[:len(args.args) - len(args.defaults)]]
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    return [a.arg for a in (*args.args, *args.kwonlyargs)], required


def _defines(file: str, name: str) -> bool:
    """Whether a module's source defines or imports `name` at top level (star imports: assume yes)."""
    if not file.endswith(".py"):
        return True
    tree = _module_tree(file)
    if tree is None:
        return True  # the subprocess will report the real error
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name:
                    return True
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import time, including those inside top-level if/try/with blocks."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            nested = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                nested.extend(handler.body)
            out.extend(_top_level(nested))
        else:
            out.append(node)
    return out
