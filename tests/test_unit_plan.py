"""An experiment's points in-process (experiments/plan.py): `-S` parsing, grids, random samples,
data commits, stable ids; and the workspace's params overrides (experiments/workspace.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar_pipe.errors import UserError
from hangar_pipe.experiments.plan import Axis, Point, Range, experiment_name, parse_axis, plan
from hangar_pipe.experiments.workspace import check_overrides, write_overrides


@pytest.mark.parametrize(("text", "axis"), [
    ("train.lr=0.1", Axis("params.yaml", "train.lr", (0.1,))),
    ("train.lr=0.1,0.01", Axis("params.yaml", "train.lr", (0.1, 0.01))),
    ("cfg.json:model.layers=[1, 2],[3]", Axis("cfg.json", "model.layers", ([1, 2], [3]))),
    ("name='a,b',c", Axis("params.yaml", "name", ("a,b", "c"))),
    ("flag=true,false", Axis("params.yaml", "flag", (True, False))),
    ("lr=range(0.001, 0.1, log)", Axis("params.yaml", "lr", Range(0.001, 0.1, log=True))),
    ("bs=randint(8,64)", Axis("params.yaml", "bs", Range(8, 64, integer=True))),
])
def test_parse_axis(text: str, axis: Axis) -> None:
    assert parse_axis(text) == axis


@pytest.mark.parametrize(("text", "message"), [
    ("train.lr", "expected [FILE:]KEY=VALUE"),
    ("=1", "expected [FILE:]KEY=VALUE"),
    ("train lr=1", "is not a dotted key"),
    ("lr=range(0.1,0.01)", "needs LOW < HIGH"),
    ("lr=range(0,1,log)", "LOW > 0 for log"),
    ("lr=[1,", "cannot read the value"),
])
def test_bad_axes(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", "\\[")):
        parse_axis(text)


def test_a_grid_is_the_product_times_the_commits() -> None:
    points = plan([parse_axis("a=1,2"), parse_axis("b=x,y")], ["c1", "c2"])
    assert [(p.overrides["params.yaml"]["a"], p.overrides["params.yaml"]["b"], p.data_commit)
            for p in points] == [(1, "x", "c1"), (1, "y", "c1"), (2, "x", "c1"), (2, "y", "c1"),
                                 (1, "x", "c2"), (1, "y", "c2"), (2, "x", "c2"), (2, "y", "c2")]
    assert len({p.id for p in points}) == 8


def test_ids_are_stable_and_say_what_is_set() -> None:
    a = Point({"params.yaml": {"x": 1, "y": 2}}, "c")
    b = Point({"params.yaml": {"y": 2, "x": 1}}, "c")
    assert a.id == b.id and len(a.id) == 8
    assert a.id != Point({"params.yaml": {"x": 1, "y": 2}}, "d").id
    assert a.label() == "x=1 y=2 @c"
    assert Point({"cfg.json": {"k": [1, 2]}}, None).label() == 'cfg.json:k=[1, 2]'


def test_random_samples_are_seeded_and_within_range() -> None:
    axes = [parse_axis("lr=range(0.001,0.1,log)"), parse_axis("bs=16,32"), parse_axis("n=randint(1,3)")]
    first, again = plan(axes, [None], random_points=20, seed=3), plan(axes, [None], random_points=20, seed=3)
    assert [p.id for p in first] == [p.id for p in again]
    assert [p.id for p in first] != [p.id for p in plan(axes, [None], random_points=20, seed=4)]
    for p in first:
        values = p.overrides["params.yaml"]
        assert 0.001 <= values["lr"] <= 0.1 and values["bs"] in (16, 32) and values["n"] in (1, 2, 3)
        assert values["lr"] == float(f"{values['lr']:.4g}")
    assert len(first) <= 20  # a point drawn twice is one point


def test_plan_errors() -> None:
    with pytest.raises(UserError, match="given twice"):
        plan([parse_axis("a=1"), parse_axis("a=2")], [None])
    with pytest.raises(UserError, match="add --random K"):
        plan([parse_axis("a=range(1,2)")], [None])


def test_experiment_names_follow_the_command() -> None:
    points = plan([parse_axis("a=1,2")], [None])
    assert experiment_name(["train"], points) == experiment_name(["train"], list(reversed(points)))
    assert experiment_name(["train"], points) != experiment_name([], points)
    assert experiment_name([], points).startswith("exp-")


def test_overrides_are_written_into_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1  # a comment\n  bs: 32\nother: 1\n")
    (tmp_path / "cfg.json").write_text('{"model": {"width": 8}}')
    write_overrides(tmp_path / "params.yaml", "params.yaml", {"train.lr": 0.5})
    write_overrides(tmp_path / "cfg.json", "cfg.json", {"model.width": [1, 2]})
    assert (tmp_path / "params.yaml").read_text() == "train:\n  lr: 0.5\n  bs: 32\nother: 1\n"
    assert '"width": [\n      1,\n      2\n    ]' in (tmp_path / "cfg.json").read_text()
    with pytest.raises(UserError, match="params.yaml has no key 'lrr' under train \\(did you mean 'lr'\\?\\)"):
        check_overrides(tmp_path, {"params.yaml": {"train.lrr": 1}})
    with pytest.raises(UserError, match="the params file is missing"):
        check_overrides(tmp_path, {"nothere.yaml": {"a": 1}})


def test_values_read_as_json_first() -> None:
    assert parse_axis("lr=1e-3,2").values == (0.001, 2)
    with pytest.raises(UserError, match="an empty value"):
        parse_axis("a=1,")
    with pytest.raises(UserError, match="must be a path inside the project"):
        parse_axis("/etc/params.yaml:a=1")
    with pytest.raises(UserError, match="must be a path inside the project"):
        parse_axis("../params.yaml:a=1")


def test_a_workspace_copy_never_reaches_the_projects_files(tmp_path: Path) -> None:
    import os

    from hangar_pipe.core.spec import load_pipeline
    from hangar_pipe.experiments.workspace import digest, make

    root = tmp_path / "p"
    (root / "real").mkdir(parents=True)
    (root / "real/x.txt").write_text("x")
    (root / "venv").mkdir()
    (root / "venv/pyvenv.cfg").write_text("")
    (tmp_path / "outside.txt").write_text("o")
    os.symlink(root / "real", root / "abs_in")  # absolute, into the project
    os.symlink("real/x.txt", root / "rel_in")  # relative, inside
    os.symlink("../outside.txt", root / "rel_out")  # relative, out of the project
    (root / "params.yaml").write_text("a: 1\n")
    (root / "pipeline.yaml").write_text("stages:\n  s: {cmd: x, params: [a], outs: [made.txt]}\n")
    (root / "made.txt").write_text("an output: restored from the cache, not copied")
    spec = load_pipeline(root / "pipeline.yaml")
    before = digest(spec)
    ws = make(spec, tmp_path / "ws", {"params.yaml": {"a": 2}})
    assert os.readlink(ws / "abs_in") == str(ws / "real")
    assert os.readlink(ws / "rel_in") == "real/x.txt"
    assert os.readlink(ws / "rel_out") == str(tmp_path / "outside.txt")
    assert (ws / "abs_in/x.txt").read_text() == "x"
    assert not (ws / "venv").exists() and not (ws / "made.txt").exists()
    assert (ws / "params.yaml").read_text() == "a: 2\n" and (root / "params.yaml").read_text() == "a: 1\n"
    assert os.path.islink(ws / ".hpipe/cache") and os.readlink(ws / ".hpipe/runs.db") == str(root / ".hpipe/runs.db")
    assert digest(spec) == before
    (root / "real/x.txt").write_text("changed")
    assert digest(spec) != before
