"""pipeline.yaml templates, in DVC's syntax: `vars`, `${...}` interpolation, `foreach`/`do` and `matrix`.

`expand(doc, root)` returns the document with every templated stage generated and every `${...}`
in a stage resolved; the rest of spec.py then parses plain stages. A generated stage's key paths
take the lines of the template they come from, so an error names the generated stage at the
template's line.

- Variables: `params.yaml` (when it exists), then the top-level `vars:` list in order (a mapping
  of values, `file` for a whole params file, `file:a,b` for some of its keys), then a stage's
  own `vars:`. Defining a name twice is an error. Files are relative to the project root.
- `${name}`, `${name.key}`, `${name[0]}`, `${a.b[1].c}`: a value that is only `${...}` keeps
  the variable's type (a list, a number); inside a longer string only numbers, strings and
  booleans (`true`/`false`) fit. `\\${` is a literal `${`; a shell variable is `$HOME`.
- `foreach: LIST | MAPPING | ${var}` with `do:` the stage; `${item}` is the item, and for a
  mapping `${key}` its key. `matrix: {name: LIST | ${var}, ...}` beside the stage's keys
  makes a stage per combination; `${item.name}` is its value of `name`.
- Names (stable, documented in docs/pipeline.md): `TEMPLATE@LABEL`. Over a list, the label is
  the item when every item is a distinct plain scalar (letters, digits, `_ . + -`), else its
  index; over a mapping, the key (or the index, likewise). For a matrix, the labels of each
  dimension joined by `-`, in the matrix's order; a dimension whose values cannot all be labels
  uses `name` + index (`train@lr0-bs1`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import product
from pathlib import Path
from typing import Any

from hangar_pipe.core.layout import PARAMS_FILE
from hangar_pipe.core.params import load_params
from hangar_pipe.core.yamlfile import KeyPath, YamlDoc
from hangar_pipe.errors import UserError, did_you_mean

_REF = re.compile(r"(\\)?\$\{([^}]*)\}")
_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)((?:\.[A-Za-z0-9_-]+|\[-?\d+\])*)\s*$")
_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(-?\d+)\]")
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")

Vars = dict[str, Any]
Raise = Callable[[KeyPath, str], UserError]


def expand(doc: YamlDoc, root: Path) -> YamlDoc:
    """The document with its templated stages generated (see the module's docstring)."""
    top = dict(doc.data)
    lines = dict(doc.lines)
    globals_ = _Globals(doc, root, top.pop("vars", None))
    stages: dict[str, Any] = {}
    made_by: dict[str, str] = {}
    for name, body in (top.get("stages") or {}).items():
        template_lines: list[tuple[KeyPath, int]] | None = None
        for made, made_body, base in _generate(doc, globals_, name, body):
            if made in stages:
                raise doc.error(("stages", name), f"stage '{made}' is generated twice (also by"
                                                  f" stages.{made_by[made]})")
            stages[made], made_by[made] = made_body, name
            if made != name:
                template_lines = template_lines or _template_lines(doc.lines, base)
                lines.update((("stages", made, *rest), line) for rest, line in template_lines)
    top["stages"] = stages
    return YamlDoc(doc.file, top, lines)


def _template_lines(source: dict[KeyPath, int], base: KeyPath) -> list[tuple[KeyPath, int]]:
    """The lines of a template's stage keys, relative to it (its matrix and foreach values left out)."""
    n = len(base)
    return [(kp[n:], line) for kp, line in source.items()
            if kp[:n] == base and (len(kp) == n or kp[n] not in ("matrix", "foreach"))]


class _Globals:
    """The variables every stage sees: params.yaml and the top-level `vars:` (read on first use)."""

    def __init__(self, doc: YamlDoc, root: Path, declared: Any) -> None:
        self.doc, self.root, self.declared = doc, root, declared
        self._vars: Vars | None = None

    def get(self) -> Vars:
        if self._vars is None:
            found: Vars = {}
            if (self.root / PARAMS_FILE).is_file():
                data = load_params(self.root / PARAMS_FILE, PARAMS_FILE)
                if not isinstance(data, (dict, type(None))):
                    raise UserError("expected a mapping at the top (its keys are pipeline.yaml's"
                                    " variables)", file=PARAMS_FILE)
                found.update(data or {})
            if self.declared is not None:
                load_vars(self.doc, self.root, self.declared, ("vars",), found, {}, skip={PARAMS_FILE})
            self._vars = found
        return self._vars


def load_vars(doc: YamlDoc, root: Path, declared: Any, keypath: KeyPath, into: Vars, scope: Vars,
              skip: set[str] | None = None) -> None:
    """Add a `vars:` list's variables to `into`; inline values are resolved in `scope`."""
    if not isinstance(declared, list):
        raise doc.error(keypath, "expected a list of mappings or params files (`- params.yaml`,"
                                 " `- file.yaml:key1,key2`, `- {name: value}`)")
    for i, entry in enumerate(declared):
        kp = keypath + (i,)
        if isinstance(entry, dict):
            values = resolve(entry, {**scope, **into}, kp, doc.error)
        elif isinstance(entry, str) and entry.strip():
            file, _, keys = (p.strip() for p in entry.partition(":"))
            if skip and file in skip:  # (params.yaml: every key of it is a variable already)
                continue
            values = _file_vars(doc, root, file, [k.strip() for k in keys.split(",") if k.strip()], kp)
        else:
            raise doc.error(kp, "expected a mapping of values or a params file name")
        for name, value in values.items():
            if name in into:
                raise doc.error(kp, f"variable '{name}' is defined twice (again here)")
            into[name] = value


def _file_vars(doc: YamlDoc, root: Path, file: str, keys: list[str], kp: KeyPath) -> Vars:
    """A params file's variables (only `keys`, if any); its own parse errors name it."""
    if not (root / file).is_file():
        raise doc.error(kp, f"vars file '{file}' not found")
    data = load_params(root / file, file)
    if not isinstance(data, dict):
        raise doc.error(kp, f"vars file '{file}': expected a mapping at its top")
    missing = [k for k in keys if k not in data]
    if missing:
        raise doc.error(kp, f"vars file '{file}' has no key '{missing[0]}'"
                            f"{did_you_mean(missing[0], data)} (keys: {', '.join(data)})")
    return {k: data[k] for k in keys} if keys else dict(data)


# -- generating stages -------------------------------------------------------------------------

def _generate(doc: YamlDoc, globals_: _Globals, name: str, body: Any) -> Iterator[tuple[str, Any, KeyPath]]:
    """(stage name, resolved body, the template's key path) for each stage a definition makes."""
    keypath: KeyPath = ("stages", name)
    if not isinstance(body, dict):
        yield name, body, keypath
        return
    if "foreach" in body or "do" in body:
        yield from _foreach(doc, globals_, name, body, keypath)
    elif "matrix" in body:
        yield from _matrix(doc, globals_, name, body, keypath)
    else:
        yield name, _stage(doc, globals_, body, keypath, {}), keypath


def _foreach(doc: YamlDoc, globals_: _Globals, name: str, body: dict[str, Any],
             keypath: KeyPath) -> Iterator[tuple[str, Any, KeyPath]]:
    extra = [k for k in body if k not in ("foreach", "do")]
    if extra:
        raise doc.error(keypath, f"unknown key '{extra[0]}' beside foreach (a foreach stage has only"
                                 " 'foreach' and 'do')", at=keypath + (extra[0],))
    if "foreach" not in body or "do" not in body:
        raise doc.error(keypath, "'foreach' (what to generate over) and 'do' (the stage) go together",
                        at=keypath + (next(iter(body)),))
    if not isinstance(body["do"], dict):
        raise doc.error(keypath + ("do",), "expected the stage to generate (a mapping)")
    items = _collection(doc, globals_, body["foreach"], keypath + ("foreach",), "foreach")
    if isinstance(items, dict):
        labels = _labels(list(items)) or [str(i) for i in range(len(items))]
        scopes = [{"key": k, "item": v} for k, v in items.items()]
    else:
        labels = _labels(items) or [str(i) for i in range(len(items))]
        scopes = [{"item": v} for v in items]
    for label, scope in zip(labels, scopes):
        yield f"{name}@{label}", _stage(doc, globals_, body["do"], keypath + ("do",), scope), keypath + ("do",)


def _matrix(doc: YamlDoc, globals_: _Globals, name: str, body: dict[str, Any],
            keypath: KeyPath) -> Iterator[tuple[str, Any, KeyPath]]:
    matrix = body["matrix"]
    if not isinstance(matrix, dict) or not matrix:
        raise doc.error(keypath + ("matrix",), "expected a mapping of names to lists")
    dims: dict[str, list[Any]] = {}
    labels: list[list[str]] = []
    for dim, values in matrix.items():
        got = _collection(doc, globals_, values, keypath + ("matrix", dim), f"matrix.{dim}")
        if not isinstance(got, list) or not got:
            raise doc.error(keypath + ("matrix", dim), "expected a non-empty list of values")
        dims[str(dim)] = got
        labels.append(_labels(got) or [f"{dim}{i}" for i in range(len(got))])
    template = {k: v for k, v in body.items() if k != "matrix"}
    for picks in product(*(range(len(v)) for v in dims.values())):
        item = {dim: values[i] for (dim, values), i in zip(dims.items(), picks)}
        label = "-".join(lab[i] for lab, i in zip(labels, picks))
        yield f"{name}@{label}", _stage(doc, globals_, template, keypath, {"item": item}), keypath


def _collection(doc: YamlDoc, globals_: _Globals, value: Any, keypath: KeyPath, what: str) -> Any:
    if isinstance(value, str):
        value = resolve(value, globals_.get(), keypath, doc.error)
    if isinstance(value, list) or (isinstance(value, dict) and what == "foreach"):
        if not value:
            raise doc.error(keypath, f"{what} has nothing to generate (an empty collection)")
        return value
    want = "a list or a mapping" if what == "foreach" else "a list"
    raise doc.error(keypath, f"expected {want} (or a ${{variable}} holding one), got {type(value).__name__}")


def _labels(values: list[Any]) -> list[str] | None:
    """Each value as a name label, when every one is a distinct plain scalar; else None."""
    out = []
    for v in values:
        text = _scalar_text(v) if isinstance(v, (str, int, float, bool)) else None
        if text is None or not _LABEL.match(text):
            return None
        out.append(text)
    return out if len(set(out)) == len(out) else None


def _stage(doc: YamlDoc, globals_: _Globals, body: dict[str, Any], keypath: KeyPath, scope: Vars) -> Any:
    """One stage's body with its `vars:` and every `${...}` resolved."""
    variables = {**globals_.get(), **scope}
    if "vars" in body:
        local: Vars = {}
        load_vars(doc, globals_.root, body["vars"], keypath + ("vars",), local, variables)
        clash = [k for k in local if k in variables]
        if clash:
            raise doc.error(keypath + ("vars",), f"variable '{clash[0]}' is defined twice (also"
                                                 " outside this stage)")
        variables.update(local)
    rest = {k: v for k, v in body.items() if k != "vars"}
    return resolve(rest, variables, keypath, doc.error)


# -- interpolation -----------------------------------------------------------------------------

def resolve(value: Any, variables: Vars, keypath: KeyPath, error: Raise) -> Any:
    """`value` with every `${...}` replaced (a copy; mappings' keys too)."""
    if isinstance(value, str):
        return _string(value, variables, keypath, error) if "${" in value else value
    if isinstance(value, dict):
        return {_key(k, variables, keypath, error): resolve(v, variables, keypath + (k,), error)
                for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables, keypath + (i,), error) for i, v in enumerate(value)]
    return value


def _key(key: Any, variables: Vars, keypath: KeyPath, error: Raise) -> Any:
    if not (isinstance(key, str) and "${" in key):
        return key
    made = _string(key, variables, keypath + (key,), error)
    if not isinstance(made, (str, int, float, bool)):
        raise error(keypath + (key,), f"'{key}' is {_kind(made)}: a key must be a string")
    return made if isinstance(made, str) else _scalar_text(made)


def _string(text: str, variables: Vars, keypath: KeyPath, error: Raise) -> Any:
    whole = _REF.fullmatch(text)
    if whole and not whole.group(1):
        return _copy(lookup(whole.group(2), variables, keypath, error))

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        value = lookup(match.group(2), variables, keypath, error)
        shown = _scalar_text(value)
        if shown is None:
            raise error(keypath, f"'${{{match.group(2).strip()}}}' is {_kind(value)}: it cannot go"
                                 " inside a string (make the whole value the ${...}, or pick one item)")
        return shown

    return _REF.sub(one, text)


def lookup(expr: str, variables: Vars, keypath: KeyPath, error: Raise) -> Any:
    """The value of `name.key[0]...`; errors say what is there instead."""
    m = _EXPR.match(expr)
    if m is None:
        raise error(keypath, f"bad expression '${{{expr}}}': expected a name, then .key or [index]"
                             " parts (such as ${train.lr} or ${item[0]})")
    name, rest = m.group(1), m.group(2)
    if name not in variables:
        known = sorted(variables)
        hint = did_you_mean(name, known) or (f" (known: {', '.join(known[:12])})" if known else
                                              " (no variables are defined)")
        raise error(keypath, f"undefined variable '{name}' in '${{{expr.strip()}}}'{hint}")
    value, path = variables[name], name
    for part in _PART.finditer(rest):
        value, path = _step(value, path, part, keypath, error)
    return value


def _step(value: Any, path: str, part: re.Match[str], keypath: KeyPath, error: Raise) -> tuple[Any, str]:
    key, index = part.group(1), part.group(2)
    if key is not None:
        if isinstance(value, dict):
            if key in value:
                return value[key], f"{path}.{key}"
            raise error(keypath, f"'{path}' has no key '{key}'{did_you_mean(key, list(value))}"
                                 f" (keys: {', '.join(map(str, value))})")
        if isinstance(value, list) and key.isdigit():
            index = key
        else:
            raise error(keypath, f"'{path}' is {_kind(value)}, not a mapping: no key '{key}'")
    if not isinstance(value, list):
        raise error(keypath, f"'{path}' is {_kind(value)}, not a list: no item [{index}]")
    i = int(index)
    if not -len(value) <= i < len(value):
        raise error(keypath, f"'{path}' has no item [{i}] (it has {len(value)})")
    return value[i], f"{path}[{i}]"


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
