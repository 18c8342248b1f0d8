"""pipeline.yaml templates in-process (core/template.py through load_pipeline): vars, ${...},
foreach, matrix, the generated names, and every error as one line with file:line:key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hangar_pipe.core.graph import Graph
from hangar_pipe.core.spec import PipelineSpec, load_pipeline
from hangar_pipe.errors import UserError


def spec_of(tmp_path: Path, text: str, params: str | None = None, **files: str) -> PipelineSpec:
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(text))
    if params is not None:
        (tmp_path / "params.yaml").write_text(textwrap.dedent(params))
    for name, body in files.items():
        (tmp_path / name.replace("__", ".")).write_text(textwrap.dedent(body))
    return load_pipeline(tmp_path / "pipeline.yaml")


def cmds(spec: PipelineSpec) -> dict[str, object]:
    return {name: stage.cmd for name, stage in spec.stages.items()}


def test_foreach_over_a_list_names_stages_by_item(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        stages:
          prep:
            foreach: [small, big]
            do:
              cmd: prep ${item}
              outs:
                - out/${item}.bin
    """)
    assert cmds(spec) == {"prep@small": "prep small", "prep@big": "prep big"}
    assert [o.key for o in spec.stages["prep@big"].outs] == ["out/big.bin"]


def test_foreach_over_a_mapping_gives_key_and_item(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        stages:
          fit:
            foreach:
              us: {lr: 0.1, region: west}
              eu: {lr: 0.2, region: east}
            do:
              cmd: fit ${key} --lr ${item.lr} --where ${item.region}
              outs: [m_${key}]
    """.replace("[m_${key}]", "['m_${key}']"))
    assert cmds(spec) == {"fit@us": "fit us --lr 0.1 --where west", "fit@eu": "fit eu --lr 0.2 --where east"}


def test_foreach_items_that_cannot_be_labels_are_named_by_index(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        stages:
          a:
            foreach: [{x: 1}, {x: 2}]
            do: {cmd: "run ${item.x}"}
          b:
            foreach: ["has space", plain]
            do: {cmd: "run '${item}'"}
          c:
            foreach: [dup, dup]
            do: {cmd: "run ${item}"}
    """)
    assert list(spec.stages) == ["a@0", "a@1", "b@0", "b@1", "c@0", "c@1"]
    assert spec.stages["b@0"].cmd == "run 'has space'"


def test_matrix_is_the_cartesian_product_in_order(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        stages:
          train:
            matrix:
              lr: [0.1, 0.01]
              bs: ${sizes}
              opt: [{name: sgd}, {name: adam}]
            cmd: train --lr ${item.lr} --bs ${item.bs} --opt ${item.opt.name}
    """, params="sizes: [32, 64]\n")
    assert list(spec.stages) == [f"train@{lr}-{bs}-opt{o}" for lr in ("0.1", "0.01")
                                 for bs in (32, 64) for o in (0, 1)]
    assert spec.stages["train@0.01-64-opt1"].cmd == "train --lr 0.01 --bs 64 --opt adam"


def test_vars_inline_files_keys_and_params_yaml(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        vars:
          - base: /data
            list: [1, 2]
          - other.yaml:model
          - conf.json
        stages:
          s:
            cmd: run ${base}/${train.lr} ${model.name} ${port} ${list[1]} ${flag}
            with_dummy: x
    """.replace("            with_dummy: x\n", ""), params="train: {lr: 0.5}\n",
        other__yaml="model: {name: resnet}\nunused: 1\n", conf__json='{"port": 8080, "flag": true}')
    assert spec.stages["s"].cmd == "run /data/0.5 resnet 8080 2 true"


def test_a_whole_value_keeps_its_type(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        stages:
          s:
            uses: mod:fn
            with: {sizes: "${sizes}", lr: "${lr}", name: "n-${lr}"}
    """, params="sizes: [1, 2]\nlr: 0.1\n", mod__py="def fn(**kw):\n    pass\n")
    assert spec.stages["s"].with_ == {"sizes": [1, 2], "lr": 0.1, "name": "n-0.1"}


def test_stage_vars_and_escapes(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, r"""
        stages:
          s:
            foreach: [a, b]
            do:
              vars:
                - tag: v-${item}
              cmd: echo ${tag} \${HOME} $HOME
    """)
    assert spec.stages["s@b"].cmd == "echo v-b ${HOME} $HOME"


def test_a_plain_pipeline_is_left_as_it_is(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "stages:\n  s: {cmd: echo $HOME}\n")
    assert cmds(spec) == {"s": "echo $HOME"}


def test_the_group_name_selects_every_generated_stage(tmp_path: Path) -> None:
    graph = Graph.build(spec_of(tmp_path, """
        stages:
          prep:
            foreach: [a, b]
            do: {cmd: "p ${item}", outs: ["${item}.txt"]}
          join: {cmd: j, deps: [a.txt, b.txt], outs: [all.txt]}
    """))
    assert graph.select(["prep"]) == ["prep@a", "prep@b"]
    assert graph.select(["join"]) == ["prep@a", "prep@b", "join"]


def test_errors_in_a_generated_stage_point_at_the_template(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        spec_of(tmp_path, """
            stages:
              prep:
                foreach: [a, b]
                do:
                  cmd: p
                  outz: [x]
        """)
    assert str(err.value) == "pipeline.yaml:7: stages.prep@a: unknown key 'outz' (did you mean 'outs'?)"


@pytest.mark.parametrize(("text", "params", "message"), [
    ("stages:\n  s: {cmd: 'echo ${lrr}'}\n", "lr: 1\n",
     "pipeline.yaml:2: stages.s.cmd: undefined variable 'lrr' in '${lrr}' (did you mean 'lr'?)"),
    ("stages:\n  s: {cmd: 'echo ${a +}'}\n", None,
     "pipeline.yaml:2: stages.s.cmd: bad expression '${a +}': expected a name, then .key or [index]"
     " parts (such as ${train.lr} or ${item[0]})"),
    ("stages:\n  s: {cmd: 'echo ${train.lrr}'}\n", "train: {lr: 1}\n",
     "pipeline.yaml:2: stages.s.cmd: 'train' has no key 'lrr' (did you mean 'lr'?) (keys: lr)"),
    ("stages:\n  s: {cmd: 'echo ${l[2]}'}\n", "l: [1, 2]\n",
     "pipeline.yaml:2: stages.s.cmd: 'l' has no item [2] (it has 2)"),
    ("stages:\n  s: {cmd: 'echo ${l}'}\n", "l: [1, 2]\n",
     "pipeline.yaml:2: stages.s.cmd: '${l}' is a list: it cannot go inside a string (make the whole"
     " value the ${...}, or pick one item)"),
    ("stages:\n  s:\n    foreach: [a, b]\n", None,
     "pipeline.yaml:3: stages.s: 'foreach' (what to generate over) and 'do' (the stage) go together"),
    ("stages:\n  s:\n    foreach: [a]\n    do: {cmd: x}\n    cmd: y\n", None,
     "pipeline.yaml:5: stages.s: unknown key 'cmd' beside foreach (a foreach stage has only 'foreach'"
     " and 'do')"),
    ("stages:\n  s:\n    foreach: 3\n    do: {cmd: x}\n", None,
     "pipeline.yaml:3: stages.s.foreach: expected a list or a mapping (or a ${variable} holding one), got int"),
    ("stages:\n  s:\n    matrix: {lr: []}\n    cmd: x\n", None,
     "pipeline.yaml:3: stages.s.matrix.lr: matrix.lr has nothing to generate (an empty collection)"),
    ("vars:\n  - lr: 2\nstages:\n  s: {cmd: 'x ${lr}'}\n", "lr: 1\n",
     "pipeline.yaml:2: vars[0]: variable 'lr' is defined twice (again here)"),
    ("vars:\n  - nothere.yaml\nstages:\n  s: {cmd: 'x ${lr}'}\n", None,
     "pipeline.yaml:2: vars[0]: vars file 'nothere.yaml' not found"),
    ("vars: {a: 1}\nstages:\n  s: {cmd: x}\n", None,
     "pipeline.yaml:1: vars: expected a list, got dict"),
    ("stages:\n  s:\n    foreach: [a, b]\n    do: {cmd: x}\n  s@a: {cmd: y}\n", None,
     "pipeline.yaml:5: stages.s@a: invalid stage name 's@a' (letters, digits, _ . -)"),
])
def test_template_errors_are_one_line(tmp_path: Path, text: str, params: str | None, message: str) -> None:
    with pytest.raises(UserError) as err:
        spec_of(tmp_path, text, params)
    assert str(err.value) == message


def test_a_name_generated_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        spec_of(tmp_path, """
            stages:
              x:
                matrix: {p: [a-b, a], q: [c, b-c]}
                cmd: run
        """)
    assert str(err.value) == "pipeline.yaml:3: stages.x: stage 'x@a-b-c' is generated twice (also by stages.x)"


def test_keys_and_params_yaml_in_vars(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, """
        vars:
          - params.yaml:train
        stages:
          s:
            uses: mod:fn
            with: {"${name}": 1, "${flag}": 2}
    """, params="train: {lr: 1}\nname: width\nflag: true\n", mod__py="def fn(**kw):\n    pass\n")
    assert spec.stages["s"].with_ == {"width": 1, "true": 2}
    with pytest.raises(UserError, match="is a mapping: a key must be a string"):
        spec_of(tmp_path, "stages:\n  s:\n    uses: mod:fn\n    with: {'${train}': 1}\n",
                params="train: {lr: 1}\n")
