"""The map stage's pure parts: what to redo (plan_map), its state and config digest, the function
over samples (Mapper: results checked, failures named by key, batches, forked workers), and the
words status uses for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hangar_pipe.core.decisions import SAMPLES_CHANGED, describe, samples_changed
from hangar_pipe.errors import UserError
from hangar_pipe.mapping import state as map_state
from hangar_pipe.mapping.compute import MapFailure, Mapper, Schema, load_function
from hangar_pipe.mapping.plan import plan_map, same_keys
from hangar_pipe.stages.map import parse_with


def run(column: str, samples: dict[Any, str]) -> bytes:
    """A column's record run as Hangar keeps it: sorted, `$`-joined `f:<column>:<key> <digest>`."""
    keys = {(f"#{k}" if isinstance(k, int) else k): d for k, d in samples.items()}
    return "$".join(f"f:{column}:{k} 0={d}" for k, d in sorted(keys.items())).encode()


def state(config: str = "c", outputs: dict[str, str] | None = None, inputs: tuple[str, ...] = ("x",)
          ) -> map_state.MapState:
    return map_state.MapState(config, "master", "a=old", {c: "fp" for c in inputs}, "a=out",
                              outputs or {"y": "fy"}, "")


BASE = {i: f"d{i}" for i in range(10)}


def test_incremental_plan_counts_added_modified_removed() -> None:
    new = {**BASE, 3: "changed", 10: "new", 11: "new2"}
    del new[7]
    plan = plan_map(state(), {"x": run("x", BASE)}, "c", {"x": run("x", new)}, {"y": "fy"}, force=False)
    assert plan.full is None
    assert plan.process == [b"#3", b"#10", b"#11"] and plan.remove == [b"#7"]
    assert plan.counts == {"added": 2, "modified": 1, "removed": 1}
    assert plan.reason == {"added": 2, "modified": 1, "removed": 1, "since": "a=old"}


def test_nothing_changed_is_an_empty_plan() -> None:
    plan = plan_map(state(), {"x": run("x", BASE)}, "c", {"x": run("x", BASE)}, {"y": "fy"}, force=False)
    assert (plan.full, plan.process, plan.remove) == (None, [], [])


@pytest.mark.parametrize(("previous", "config", "outputs", "force", "why"), [
    (None, "c", {"y": "fy"}, False, "no earlier run"),
    (state(), "other", {"y": "fy"}, False, "function, arguments, params, code"),
    (state(), "c", {"y": "someone else's"}, False, "output columns are not the ones"),
    (state(), "c", {}, False, "output columns are not the ones"),  # (the output column gone)
    (state(), "c", {"y": "fy"}, True, "forced"),
])
def test_full_recompute_when_anything_but_samples_changed(previous: map_state.MapState | None, config: str,
                                                          outputs: dict[str, str], force: bool,
                                                          why: str) -> None:
    plan = plan_map(previous, {"x": run("x", BASE)}, config, {"x": run("x", {**BASE, 3: "z"})}, outputs, force)
    assert plan.full is not None and why in plan.full
    assert plan.process == [f"#{i}".encode() for i in range(10)]  # every sample, in key order


def test_inputs_must_hold_the_same_samples() -> None:
    old = {"x": run("x", BASE), "w": run("w", BASE)}
    plan = plan_map(state(inputs=("x", "w")), old, "c", {"x": run("x", {**BASE, 2: "m"}), "w": run("w", BASE)},
                    {"y": "fy"}, force=False)
    assert plan.process == [b"#2"] and plan.counts["modified"] == 1  # modified in one column: redone
    with pytest.raises(UserError, match="sample 12 was added to column 'x' alone"):
        plan_map(state(inputs=("x", "w")), old, "c", {"x": run("x", {**BASE, 12: "n"}), "w": run("w", BASE)},
                 {"y": "fy"}, force=False)
    with pytest.raises(UserError, match="sample 4 is in column 'x' but not in 'w'"):
        same_keys({"x": run("x", BASE), "w": run("w", {k: v for k, v in BASE.items() if k != 4})})


def test_state_round_trip_and_a_damaged_state_is_no_state(tmp_path: Path) -> None:
    runs = {"x": run("x", BASE), "w": run("w", {"a": "1"})}
    saved = map_state.save(tmp_path, "norm@training", state(), runs)
    loaded = map_state.load(tmp_path, "norm@training")
    assert loaded == (saved, runs) and saved.provenance.startswith("provenance-")
    again = map_state.save(tmp_path, "norm@training", state(config="d"), {"x": b""})
    assert [p.name for p in map_state.folder(tmp_path, "norm@training").glob("provenance-*")] == [again.provenance]
    (map_state.folder(tmp_path, "norm@training") / again.provenance).write_bytes(b"garbage")
    assert map_state.load(tmp_path, "norm@training") is None
    assert map_state.load(tmp_path, "never-ran") is None


def test_config_digest_ignores_workers_and_the_input_samples_only() -> None:
    material = {"definition": {"uses": "map", "with": {"fn": "m:f", "inputs": ["x"], "workers": 2}},
                "deps": {"hangar:.": {"x": "fp1", "lookup": "L1"}, "code:m": "h1"}, "params": {}}
    digest = map_state.config_digest(material, ["x"], {"x": {"shape": [4], "dtype": "float32"}})

    def changed(**kw: Any) -> str:
        m = {**material, **kw}
        return map_state.config_digest(m, ["x"], {"x": {"shape": [4], "dtype": "float32"}})

    assert changed(definition={"uses": "map", "with": {"fn": "m:f", "inputs": ["x"], "workers": 8}}) == digest
    assert changed(deps={"hangar:.": {"x": "fp2", "lookup": "L1"}, "code:m": "h1"}) == digest
    assert changed(deps={"hangar:.": {"x": "fp1", "lookup": "L2"}, "code:m": "h1"}) != digest
    assert changed(deps={"hangar:.": {"x": "fp1", "lookup": "L1"}, "code:m": "h2"}) != digest
    assert changed(params={"params.yaml": {"norm.std": 2}}) != digest
    assert map_state.config_digest(material, ["x"], {"x": {"shape": [4], "dtype": "float64"}}) != digest


def double(sample: dict[str, np.ndarray], k: float = 2.0) -> dict[str, np.ndarray]:
    return {"y": sample["x"] * np.float32(k)}


def fails_on_7(sample: dict[str, np.ndarray]) -> np.ndarray:
    if np.any(sample["x"][..., 0] == 7):
        raise ValueError("a seven")
    return sample["x"]


def arrays(n: int = 50) -> tuple[dict[str, np.ndarray], list[bytes]]:
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], 3, axis=1)
    return {"x": x}, [f"#{i}".encode() for i in range(n)]


@pytest.mark.parametrize(("batch", "workers"), [(None, 1), (8, 1), (None, 2), (8, 2)])
def test_mapper_gives_the_same_results_whatever_the_batch_and_workers(batch: int | None, workers: int) -> None:
    inputs, keys = arrays(600)
    mapper = Mapper(double, "t:double", ["y"], batch, {"k": 3.0})
    out = mapper.compute(inputs, keys, workers)
    assert np.array_equal(out["y"], inputs["x"] * 3) and mapper.schemas["y"] == Schema((3,), np.dtype("float32"))


@pytest.mark.parametrize(("batch", "workers"), [(None, 1), (16, 1), (16, 2)])
def test_a_failing_sample_is_named_by_its_key(batch: int | None, workers: int) -> None:
    inputs, keys = arrays(600)
    with pytest.raises(MapFailure, match=r"fn t:f failed on sample 7: ValueError: a seven"):
        Mapper(fails_on_7, "t:f", ["x"], batch).compute(inputs, keys, workers)


@pytest.mark.parametrize(("fn", "message"), [
    (lambda s: [1, 2], "returned list for sample 0; expected a dict"),
    (lambda s: {"z": s["x"]}, r"returned no 'y' for sample 0 \(it returned: z\)"),
    (lambda s: {"y": s["x"][:2] if s["x"][0] == 4 else s["x"]}, r"'y' of sample 4 is shape \(2,\) float32, expected shape \(3,\)"),
    (lambda s: {"y": s["x"].astype(np.float64) if s["x"][0] == 5 else s["x"]}, "'y' of sample 5 is shape .3,. float64"),
    (lambda s: {"y": np.array(["a", "b", "c"])}, "expected shape"),
])
def test_wrong_results_are_one_line_naming_the_sample(fn: Any, message: str) -> None:
    inputs, keys = arrays(10)
    with pytest.raises(UserError, match=message):
        Mapper(fn, "t:f", ["y"]).compute(inputs, keys)


def test_a_batch_with_another_number_of_rows_is_an_error() -> None:
    inputs, keys = arrays(10)
    with pytest.raises(UserError, match="has .1,. rows, expected 4"):
        Mapper(lambda b: {"y": b["x"][:1]}, "t:f", ["y"], batch=4).compute(inputs, keys)


def test_declared_schema_is_checked() -> None:
    inputs, keys = arrays(4)
    mapper = Mapper(double, "t:double", ["y"], schemas={"y": Schema((3,), np.dtype("float64"))})
    with pytest.raises(UserError, match="expected shape .3,. float64"):
        mapper.compute(inputs, keys)


def test_load_function_errors_are_one_line() -> None:
    with pytest.raises(UserError, match="cannot import module 'no_such_module_x'"):
        load_function("no_such_module_x:f")
    with pytest.raises(UserError, match="module 'json' has no function 'nope'"):
        load_function("json:nope")
    assert load_function("json:dumps")({"a": 1}) == '{"a": 1}'


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fn": "nocolon"}, "with.fn: expected 'module:function'"),
    ({"inputs": []}, "with.inputs: expected a list"),
    ({"outputs": ["x"]}, "column 'x' is also an input"),
    ({"outputs": ["y", "y"]}, "with.outputs: a column is listed twice"),
    ({"batch": 0}, "with.batch: expected a whole number"),
    ({"workers": True}, "with.workers: expected a whole number"),
    ({"args": [1]}, "with.args: expected a mapping"),
    ({"outputs": {"y": {"shape": [0]}}}, r"with.outputs.y.shape: expected a list of positive sizes"),
    ({"outputs": {"y": {"shape": [3], "dtype": "complex64"}}}, "with.outputs.y.dtype: expected one of"),
])
def test_bad_with_is_one_line_naming_the_key(kwargs: dict[str, Any], message: str) -> None:
    base = {"fn": "m:f", "inputs": ["x"], "outputs": ["y"], "batch": None, "workers": None, "args": None}
    with pytest.raises(UserError, match=message):
        parse_with(**{**base, **kwargs})
    declared = parse_with(**{**base, "outputs": {"y": {"shape": [3], "dtype": "uint8"}}})
    assert declared.declared == {"y": Schema((3,), np.dtype("uint8"))}


def test_status_words() -> None:
    detail = {"added": 100, "modified": 15, "removed": 5, "since": "a=39a3b2c1d4e5f6"}
    assert samples_changed(detail) == "120 samples changed (100 added, 15 modified, 5 removed) since a=39a3b2c1…"
    assert samples_changed({"modified": 1, "since": "a=3"}, brief=True) == "1 sample changed (1 modified)"
    assert describe({SAMPLES_CHANGED: detail}) == samples_changed(detail)
    assert describe({SAMPLES_CHANGED: detail}, width=60) == "120 samples changed (100 added, 15 modified, 5 removed)"
