"""Built-in `uses: map`: a function over the samples of Hangar columns, redoing only what changed.

```yaml
features:
  uses: map
  with: {fn: "mypkg.features:normalize", inputs: [images], outputs: [images_norm], batch: 256}
  deps: [{hangar: [images]}]
  outs: [{hangar: [images_norm]}]
```

The first run computes every sample and commits the output columns (keys as in the inputs). It
records what it read (mapping/state.py). A later run diffs the input columns' records against
that provenance, computes only the samples added or modified, deletes the removed ones from the
outputs, and commits once. Everything is computed again when the function, its `args`, the
stage's params, code or other deps, or an input schema change, when the outputs are not the ones
it committed, or with `-f`. `--verify` computes every sample again and compares it with the output
commit, writing nothing. A failure commits nothing: the last good commit stays the branch head.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hangar_pipe.core.decisions import samples_changed
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.keys import key_value, sort_keys
from hangar_pipe.hangar.store import HangarStore, short
from hangar_pipe.mapping import state as map_state
from hangar_pipe.mapping.compute import MapFailure, Mapper, Schema, load_function
from hangar_pipe.mapping.plan import MapPlan, plan_map, same_keys
from hangar_pipe.training.bulk_read import locate

CHUNK = 8192  # samples read, computed and written at a time
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")


@dataclass(frozen=True)
class MapSpec:
    """The stage's `with:`, checked."""

    fn: str
    inputs: list[str]
    outputs: list[str]
    declared: dict[str, Schema]
    batch: int | None
    workers: int | None
    args: dict[str, Any]


@dataclass(frozen=True)
class StageEnv:
    """What hpipe tells the stage (core.stage_ops): where it writes, what its run key is made of,
    and -f, --verify, -j."""

    stage: str
    root: Path
    repo: Path
    branch: str | None
    material: dict[str, Any] | None
    force: bool
    verify: bool
    jobs: int

    @classmethod
    def read(cls) -> StageEnv:
        get = os.environ.get
        inputs = get("HPIPE_STAGE_INPUTS")
        material = json.loads(Path(inputs).read_text()) if inputs else None
        if inputs:
            Path(inputs).unlink(missing_ok=True)  # (read once; the resume folder stays empty)
        return cls(get("HPIPE_STAGE", "map"), Path(get("HPIPE_ROOT", ".")), Path(get("HPIPE_DATA_REPO", ".")),
                   get("HPIPE_DATA_BRANCH"), material,
                   get("HPIPE_FORCE") == "1", get("HPIPE_VERIFY") == "1", int(get("HPIPE_JOBS") or 1))


def _names(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"with.{key}: expected a list of Hangar column names")
    if len(set(value)) != len(value):
        raise UserError(f"with.{key}: a column is listed twice")
    return list(value)


def _schema(column: str, value: Any) -> Schema:
    if not isinstance(value, dict) or set(value) - {"shape", "dtype"} or "shape" not in value:
        raise UserError(f"with.outputs.{column}: expected {{shape: [..], dtype: ..}}")
    shape, dtype = value["shape"], value.get("dtype", "float32")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise UserError(f"with.outputs.{column}.shape: expected a list of positive sizes, got {shape!r}")
    if dtype not in DTYPES:
        raise UserError(f"with.outputs.{column}.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return Schema(tuple(shape), np.dtype(dtype))


def parse_with(fn: Any, inputs: Any, outputs: Any, batch: Any, workers: Any, args: Any) -> MapSpec:
    """`with:` as a MapSpec; one line naming the key when it is not one."""
    if not isinstance(fn, str) or ":" not in fn:
        raise UserError(f"with.fn: expected 'module:function', got {fn!r}")
    declared = {c: _schema(c, v) for c, v in outputs.items()} if isinstance(outputs, dict) else {}
    names = _names(list(outputs) if isinstance(outputs, dict) else outputs, "outputs")
    ins = _names(inputs, "inputs")
    if both := set(ins) & set(names):
        raise UserError(f"with.outputs: column '{sorted(both)[0]}' is also an input")
    for key, value in (("batch", batch), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"with.{key}: expected a whole number of at least 1, got {value!r}")
    if args is not None and not isinstance(args, dict):
        raise UserError(f"with.args: expected a mapping of keyword arguments for fn, got {args!r}")
    return MapSpec(fn, ins, names, declared, batch, workers, dict(args or {}))


def run(fn: str, inputs: list[str], outputs: list[str] | dict[str, Any], batch: int | None = None,
        workers: int | None = None, args: dict[str, Any] | None = None) -> None:
    """Map `fn` over the samples of the input columns into the output columns (see the module)."""
    from hangar_pipe.hangar.write import writer

    spec = parse_with(fn, inputs, outputs, batch, workers, args)
    env = StageEnv.read()
    if env.branch is None:
        raise UserError(f"{env.stage}: a map stage writes Hangar columns: list its outputs under outs:"
                        f" `- hangar: [{', '.join(spec.outputs)}]`")
    _check_refs(spec, env)
    mapper = Mapper(load_function(spec.fn), spec.fn, spec.outputs, spec.batch, spec.args, dict(spec.declared))
    procs = spec.workers or env.jobs
    if env.verify:
        verify(spec, env, mapper, procs)
        return
    with writer(env.repo, env.branch, env.stage) as co:
        pending, runs, commit = update(co, spec, env, mapper, procs)
    _record(env, spec, pending, runs, commit)  # (the lock released: a kill from here leaves the commit adoptable)


def _material(spec: MapSpec, env: StageEnv) -> dict[str, Any]:
    """What the run key is made of (from hpipe), or, run by hand, the `with:` and fn's source."""
    if env.material is not None:
        return env.material
    import importlib.util

    found = importlib.util.find_spec(spec.fn.partition(":")[0])
    source = Path(found.origin).read_bytes() if found and found.origin and os.path.isfile(found.origin) else b""
    return {"definition": {"with": {**spec.__dict__, "declared": str(spec.declared)}},
            "deps": {"fn": source.hex()}}


def _check_refs(spec: MapSpec, env: StageEnv) -> None:
    """The inputs are read at the head of the branch the stage writes: a dep naming another ref
    of them would be a promise the stage does not keep."""
    for key, identity in ((env.material or {}).get("deps") or {}).items():
        label = key.removeprefix("hangar:")
        ref = label.partition("@")[2] if key.startswith("hangar:") else ""
        found = [c for c in spec.inputs if isinstance(identity, dict) and c in identity]
        if ref and found and ref != env.branch:
            raise UserError(f"with.inputs: column '{found[0]}' is a dep at ref '{ref}', but a map stage reads"
                            f" its inputs at the head of the branch it writes ('{env.branch}')")


def input_records(store: HangarStore, commit: str, columns: list[str]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Each input column's records and schema at a commit; one line when one is missing or is not
    flat fixed-shape ndarray samples."""
    from hangar_pipe.training.shapes import column_spec

    runs, schemas = {}, {}
    for column in columns:
        found = store.column_records(commit, column)
        if found is None:
            have = ", ".join(store.column_names(commit)) or "none"
            raise UserError(f"with.inputs: column '{column}' not found at {short(commit)}; columns there: {have}")
        described = column_spec(store, commit, column)
        schemas[column] = {"shape": list(described.shape), "dtype": described.dtype}
        runs[column] = found[1]
    return runs, schemas


def update(co: Any, spec: MapSpec, env: StageEnv, mapper: Mapper, procs: int
           ) -> tuple[map_state.MapState, dict[str, bytes], str]:
    """Plan, compute and write what changed, and commit once (in a writer checkout); what to
    record: (the pending state, its input records, the branch head after)."""
    store = HangarStore(env.repo)
    try:
        head = co.commit_hash
        runs, schemas = input_records(store, head, spec.inputs)
        config = map_state.config_digest(_material(spec, env), spec.inputs, schemas)
        outputs_now = map_state.fingerprints(store, head, spec.outputs)
        loaded = map_state.load(env.root, env.stage)
        if loaded is None or loaded[0].outputs != outputs_now:
            loaded = _adopt_pending(env, store, head, outputs_now) or loaded
        previous, old_runs = loaded if loaded and loaded[0].branch == env.branch else (None, None)
        plan = plan_map(previous, old_runs, config, runs, outputs_now, env.force)
        _say_plan(env.stage, plan)
        started = time.perf_counter()
        columns = _output_columns(co, spec, mapper, plan)
        done = _write(co, store, head, spec, mapper, plan, columns, procs)
        seconds = time.perf_counter() - started
        print(f"{env.stage}: computed {done} sample{'s' * (done != 1)} and deleted {len(plan.remove)} in"
              f" {seconds:.2f}s ({done / max(seconds, 1e-9):,.0f} samples/s)", flush=True)
        inputs = map_state.fingerprints(store, head, spec.inputs)
        pending = map_state.save(env.root, env.stage, map_state.MapState(
            config, str(env.branch), head, inputs, "", {}, ""), runs, pending=True)
    finally:
        store.close()
    return pending, runs, _commit(co, env, spec, plan, head)


def _adopt_pending(env: StageEnv, store: HangarStore, head: str, outputs: dict[str, str]
                   ) -> tuple[map_state.MapState, dict[str, bytes]] | None:
    """The run that committed the branch head but was killed before recording it (its pending
    state names the head's parent as its input commit, and the head has this stage's message)."""
    pending = map_state.load(env.root, env.stage, pending=True)
    if pending is None or store.parents(head) != [pending[0].input_commit]:
        return None
    if not str(store.commit_info(head).get("commit_message", "")).startswith(f"hpipe stage '{env.stage}': map "):
        return None
    state, runs = pending
    adopted = dataclasses.replace(state, output_commit=head, outputs=outputs)
    print(f"{env.stage}: adopting its commit {short(head)}, made by a run killed before it was recorded",
          flush=True)
    return map_state.save(env.root, env.stage, adopted, runs), runs


def _say_plan(stage: str, plan: MapPlan) -> None:
    if plan.full is not None:
        print(f"{stage}: computing all {len(plan.process)} samples ({plan.full})", flush=True)
    elif not plan.process and not plan.remove:
        print(f"{stage}: no input sample changed since {short(plan.since or '')}: the outputs are up to date",
              flush=True)
    else:
        print(f"{stage}: {samples_changed(plan.reason)}", flush=True)


def _output_columns(co: Any, spec: MapSpec, mapper: Mapper, plan: MapPlan) -> dict[str, Any]:
    """The output columns there now. Updated in place, every result must keep their schemas; on
    a full run one of another schema than the results is replaced (`_column`)."""
    found = {c: co.columns[c] for c in spec.outputs if c in co.columns}
    if plan.full is None:
        for column, col in found.items():
            mapper.schemas.setdefault(column, Schema(tuple(col.shape), np.dtype(col.dtype)))
    return found


def _column(co: Any, columns: dict[str, Any], name: str, schema: Schema) -> Any:
    """The output column of this schema: the one there, or a new one replacing it."""
    col = columns.get(name)
    if (col is not None and col.column_type == "ndarray" and col.column_layout == "flat"
            and not col.contains_subsamples and tuple(col.shape) == schema.shape
            and np.dtype(col.dtype) == schema.dtype):
        return col
    if name in co.columns:
        del co.columns[name]
    columns[name] = co.add_ndarray_column(name, shape=schema.shape, dtype=schema.dtype)
    return columns[name]


def _chunks(keys: list[bytes]) -> Iterator[list[bytes]]:
    for lo in range(0, len(keys), CHUNK):
        yield keys[lo:lo + CHUNK]


def _read(store: HangarStore, commit: str, columns: list[str], keys: list[bytes],
          samples: dict[str, dict[bytes, bytes]]) -> dict[str, np.ndarray]:
    """These samples of each column at the commit, checked against Hangar's checksums."""
    out = {}
    for column in columns:
        rows = locate(store, commit, column, keys, samples[column])
        try:
            out[column] = rows.read(np.arange(len(keys)))
        finally:
            rows.close()
    return out


def _write(co: Any, store: HangarStore, head: str, spec: MapSpec, mapper: Mapper, plan: MapPlan,
           columns: dict[str, Any], procs: int) -> int:
    """Compute and write the planned samples a chunk at a time, delete the removed ones (on a full
    run: every output sample with no input sample); how many were computed."""
    samples = {c: store.samples(head, c) for c in spec.inputs}
    for keys in _chunks(plan.process):
        result = mapper.compute(_read(store, head, spec.inputs, keys, samples), keys, procs)
        for name in spec.outputs:
            col = _column(co, columns, name, mapper.schemas[name])
            with col:
                for i, key in enumerate(keys):
                    col[key_value(key)] = result[name][i]
    inputs = samples[spec.inputs[0]]
    for name in spec.outputs:
        if name not in columns and name in spec.declared:  # no samples at all: still the column
            _column(co, columns, name, spec.declared[name])
        if name not in columns:
            continue
        col = columns[name]
        extra = plan.remove if plan.full is None else [k for k in store.samples(head, name) if k not in inputs]
        with col:
            for key in extra:
                if key_value(key) in col:
                    del col[key_value(key)]
    return len(plan.process)


def _commit(co: Any, env: StageEnv, spec: MapSpec, plan: MapPlan, head: str) -> str:
    """Commit the outputs once (no new commit when they are unchanged); the branch head after."""
    what = (f"all {len(plan.process)} samples ({plan.full})" if plan.full is not None
            else samples_changed(plan.reason))
    try:  # (Hangar diffs the staging area to refuse an empty commit: not done twice here)
        commit: str = co.commit(f"hpipe stage '{env.stage}': map {spec.fn}, {what}")
    except RuntimeError as exc:
        if "No changes made" not in str(exc):
            raise
        print(f"{env.stage}: the output columns are unchanged; nothing to commit", flush=True)
        return head
    print(f"{env.stage}: committed {commit} to branch {env.branch}", flush=True)
    return commit


def _record(env: StageEnv, spec: MapSpec, pending: map_state.MapState, runs: dict[str, bytes], commit: str) -> None:
    """The last good run, for the next one to start from: the pending state with its outputs."""
    store = HangarStore(env.repo)  # (a new one: the commit changed the repository's records)
    try:
        outputs = map_state.fingerprints(store, commit, spec.outputs)
    finally:
        store.close()
    map_state.save(env.root, env.stage, dataclasses.replace(pending, output_commit=commit, outputs=outputs), runs)


def verify(spec: MapSpec, env: StageEnv, mapper: Mapper, procs: int) -> None:
    """Compute every sample again from the input columns at the branch head and compare it, byte
    for byte, with the output columns there; MapFailure naming the samples that differ. hpipe
    asks for it only when the stage is up to date; a config other than the one recorded here is
    refused (the outputs are not meant to match it)."""
    store = HangarStore(env.repo)
    try:
        head = store.branches().get(env.branch or "")
        if not head:
            raise UserError(f"{env.stage}: nothing to verify: branch '{env.branch}' has no commits")
        runs, schemas = input_records(store, head, spec.inputs)
        loaded = map_state.load(env.root, env.stage)
        if loaded and loaded[0].config != map_state.config_digest(_material(spec, env), spec.inputs, schemas):
            raise UserError(f"{env.stage}: out of date (its function, arguments, params or code changed"
                            " since it last ran): run hpipe repro first")
        keys = sort_keys(same_keys(runs))
        samples = {c: store.samples(head, c) for c in spec.inputs}
        outs = {c: store.samples(head, c) for c in spec.outputs}
        differ: dict[str, list[bytes]] = {c: sorted(set(o) ^ set(keys)) for c, o in outs.items()}
        for chunk in _chunks(keys):
            result = mapper.compute(_read(store, head, spec.inputs, chunk, samples), chunk, procs)
            present = [k for k in chunk if all(k in outs[c] for c in spec.outputs)]
            have = _read(store, head, spec.outputs, present, outs) if present else {}
            _compare(result, have, chunk, outs, differ)
    finally:
        store.close()
    _verdict(env.stage, head, len(keys), differ)


def _compare(result: dict[str, np.ndarray], have: dict[str, np.ndarray], chunk: list[bytes],
             outs: dict[str, dict[bytes, bytes]], differ: dict[str, list[bytes]]) -> None:
    for column, stored in have.items():
        at = 0
        for i, key in enumerate(chunk):
            if not all(key in outs[c] for c in outs):
                continue
            computed = result[column][i]
            if computed.shape != stored[at].shape or computed.dtype != stored[at].dtype \
                    or computed.tobytes() != stored[at].tobytes():
                differ[column].append(key)
            at += 1


def _verdict(stage: str, commit: str, total: int, differ: dict[str, list[bytes]]) -> None:
    bad = {c: keys for c, keys in differ.items() if keys}
    if not bad:
        print(f"{stage}: verified {total} samples: the output commit {short(commit)} holds"
              " exactly what a full recompute gives", flush=True)
        return
    column, keys = next(iter(bad.items()))
    shown = ", ".join(repr(key_value(k)) for k in keys[:5]) + (", …" if len(keys) > 5 else "")
    raise MapFailure(f"verify: {len(keys)} of {total} samples of column '{column}' at"
                     f" {short(commit)} differ from a full recompute: {shown}")
