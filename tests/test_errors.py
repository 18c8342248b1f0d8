"""Bad input: one line naming file, line and key; exit code 2; no traceback (unless --debug)."""

from __future__ import annotations

import pytest
from conftest import Project, user_error

CASES = {
    "invalid yaml": ("""
        stages:
          a:
            cmd: echo hi
           outs: [x]
    """, "pipeline.yaml:4: invalid YAML"),
    "unknown stage key": ("""
        stages:
          train:
            cmd: echo hi
            dep: [x]
    """, "pipeline.yaml:4: stages.train: unknown key 'dep' (did you mean 'deps'?)"),
    "unknown top key": ("""
        stage:
          a: {cmd: echo}
    """, "pipeline.yaml:1: unknown key 'stage' (did you mean 'stages'?)"),
    "unknown dep kind": ("""
        stages:
          train:
            cmd: echo hi
            deps:
              - a.txt
              - colums: [x]
    """, "pipeline.yaml:6: stages.train.deps[1]: unknown dependency kind 'colums'"),
    "unknown out option": ("""
        stages:
          train:
            cmd: echo hi
            outs:
              - model.pt: {cach: false}
    """, "pipeline.yaml:5: stages.train.outs[0].model.pt: unknown key 'cach' (did you mean 'cache'?)"),
    "wrong type": ("""
        stages:
          train:
            cmd: echo hi
            deps: a.txt
    """, "pipeline.yaml:4: stages.train.deps: expected a list, got str"),
    "wrong bool": ("""
        stages:
          train:
            cmd: echo hi
            frozen: "yes"
    """, "pipeline.yaml:4: stages.train.frozen: expected true or false, got str"),
    "both cmd and uses": ("""
        stages:
          train:
            cmd: echo hi
            uses: m:f
    """, "pipeline.yaml:2: stages.train: a stage needs exactly one of 'cmd' or 'uses'"),
    "neither cmd nor uses": ("""
        stages:
          train:
            deps: [a]
    """, "pipeline.yaml:2: stages.train: a stage needs exactly one of 'cmd' or 'uses'"),
    "path outside project": ("""
        stages:
          train:
            cmd: echo hi
            outs: [../escape.txt]
    """, "pipeline.yaml:4: stages.train.outs[0]: path '../escape.txt' is outside the project"),
    "absolute path outside": ("""
        stages:
          train:
            cmd: echo hi
            deps: [/etc/passwd]
    """, "stages.train.deps[0]: path '/etc/passwd' is outside the project"),
    "duplicate outputs": ("""
        stages:
          a:
            cmd: echo a > x
            outs: [x]
          b:
            cmd: echo b > x
            outs: [x]
    """, "pipeline.yaml:5: stages.b.outs: stages 'a' and 'b' both declare output 'x'"),
    "overlapping outputs": ("""
        stages:
          a:
            cmd: mkdir -p d
            outs: [d]
          b:
            cmd: echo b > d/x
            outs: [d/x]
    """, "stages.b.outs: output 'd/x' of stage 'b' is inside output 'd' of stage 'a'"),
    "cycle": ("""
        stages:
          a:
            cmd: cp y x
            deps: [y]
            outs: [x]
          b:
            cmd: cp x y
            deps: [x]
            outs: [y]
    """, "pipeline has a cycle: "),
    "duplicate key": ("""
        stages:
          a:
            cmd: echo
            cmd: echo
    """, "pipeline.yaml:4: stages.a: duplicate key 'cmd'"),
    "with on a cmd stage": ("""
        stages:
          a:
            cmd: echo
            with: {x: 1}
    """, "pipeline.yaml:4: stages.a.with: 'with' gives arguments to 'uses'; this stage has 'cmd'"),
    "uses not importable": ("""
        stages:
          a:
            uses: no_such_module_xyz:main
    """, "pipeline.yaml:3: stages.a.uses: cannot import module 'no_such_module_xyz'"),
    "uses not a target": ("""
        stages:
          a:
            uses: trainn
    """, "pipeline.yaml:3: stages.a.uses: 'trainn' is neither 'module:callable' nor a built-in stage"),
    "bad stage name": ("""
        stages:
          "a b":
            cmd: echo
    """, "pipeline.yaml:2: stages.a b: invalid stage name 'a b'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_pipeline(project: Project, case: str) -> None:
    text, expected = CASES[case]
    project.pipeline(text)
    line = user_error(project.hpipe("status", check=None))
    assert expected in line
    assert line.startswith("hpipe: error: ")


def test_cycle_names_the_cycle(project: Project) -> None:
    project.pipeline(CASES["cycle"][0])
    line = user_error(project.hpipe("repro", check=None))
    assert "a -> b -> a" in line or "b -> a -> b" in line


def test_uses_callable_missing(project: Project) -> None:
    project.write("mod.py", "def other():\n    pass\n")
    project.pipeline("""
        stages:
          a:
            uses: mod:main
    """)
    line = user_error(project.hpipe("repro", check=None))
    assert "pipeline.yaml:3: stages.a.uses: module 'mod'" in line and "has no callable 'main'" in line


def test_missing_dep_that_nothing_produces(project: Project) -> None:
    project.pipeline("""
        stages:
          a:
            cmd: echo
            deps: [exists.txt, missing.txt]
    """)
    project.write("exists.txt", "x")
    line = user_error(project.hpipe("repro", check=None))
    assert line == ("hpipe: error: pipeline.yaml:4: stages.a.deps[1]: dependency 'missing.txt'"
                    " does not exist and no stage produces it")


def test_missing_params_file_and_key(project: Project) -> None:
    project.pipeline("""
        stages:
          a:
            cmd: echo
            params: [train.lr, {other.yaml: [x]}]
    """)
    line = user_error(project.hpipe("status", check=None))
    assert line == "hpipe: error: pipeline.yaml:4: stages.a.params[0]: params file 'params.yaml' not found"
    project.write("params.yaml", "train: {epochs: 1}\n")
    line = user_error(project.hpipe("status", check=None))
    assert line == ("hpipe: error: pipeline.yaml:4: stages.a.params[0]: key 'train.lr' not found in"
                    " params.yaml")
    project.write("params.yaml", "train: {lr: 1}\n")
    line = user_error(project.hpipe("status", check=None))
    assert "stages.a.params[1].other.yaml[0]: params file 'other.yaml' not found" in line


def test_invalid_params_yaml(project: Project) -> None:
    project.pipeline("""
        stages:
          a:
            cmd: echo
            params: [x]
    """)
    project.write("params.yaml", "x: [1, 2\n")
    assert "params.yaml:2: invalid YAML" in user_error(project.hpipe("status", check=None))


def test_unknown_stage_on_command_line(three_stage: Project) -> None:
    line = user_error(three_stage.hpipe("repro", "trian", check=None))
    assert "unknown stage 'trian' (did you mean 'train'?)" in line
    assert "unknown stage" in user_error(three_stage.hpipe("status", "nope", check=None))


def test_no_pipeline_file(project: Project) -> None:
    line = user_error(project.hpipe("status", check=None))
    assert "no pipeline.yaml in" in line and "hpipe init" in line


def test_debug_shows_traceback(project: Project) -> None:
    project.pipeline(CASES["unknown stage key"][0])
    done = project.hpipe("--debug", "status", check=None)
    assert done.code != 0 and "Traceback" in done.err and "unknown key 'dep'" in done.err


def test_bad_lock_file(three_stage: Project) -> None:
    three_stage.write("pipeline.lock", "stages: [1, 2]\n")
    assert "pipeline.lock: not a hpipe/1 lock file" in user_error(three_stage.hpipe("status", check=None))


def test_bad_command_line_is_one_line(three_stage: Project) -> None:
    assert user_error(three_stage.hpipe("repro", "-j", "0", check=None)) == (
        "hpipe: error: -j/--jobs: must be 1 or more, got 0 (see --help)")
    assert "unrecognized arguments: --bogus" in user_error(three_stage.hpipe("repro", "--bogus", check=None))
    assert "no such command 'nope'" in user_error(three_stage.hpipe("nope", check=None))
    assert "did you mean 'repro'" in user_error(three_stage.hpipe("rerpo", check=None))
    assert three_stage.hpipe("--help").out.count("repro") >= 1


@pytest.mark.parametrize("entry,where", [
    ("a: [1, 2]", "stages.a: expected a mapping"),
    ("a: {deps: [1]}", "stages.a.deps[0]: expected a record"),
    ("a: {deps: {x: 1}}", "stages.a.deps: expected a list"),
    ("a: {params: [1]}", "stages.a.params: expected {file: {key: value}}"),
])
def test_lock_entries_of_the_wrong_shape(project: Project, entry: str, where: str) -> None:
    project.pipeline("stages:\n  a: {cmd: echo hi > a, outs: [a]}\n")
    project.write("pipeline.lock", f"schema: hpipe/1\nstages:\n  {entry}\n")
    assert f"pipeline.lock: {where}" in user_error(project.hpipe("status", check=None))


def test_with_values_must_be_plain_data(project: Project) -> None:
    project.write("m.py", "def f(**kw):\n    pass\n")
    project.pipeline("""
        stages:
          a:
            uses: m:f
            with: {when: 2020-01-01}
    """)
    line = user_error(project.hpipe("repro", check=None))
    assert "pipeline.yaml:4: stages.a.with: values must be plain data" in line


def test_missing_wdir(project: Project) -> None:
    project.pipeline("""
        stages:
          a:
            cmd: echo hi
            wdir: nope
    """)
    assert "pipeline.yaml:4: stages.a.wdir: folder 'nope' does not exist" in user_error(
        project.hpipe("repro", check=None))


def test_writer_needs_a_branch(project: Project) -> None:
    project.pipeline("""
        data: {ref: a=0123456789ab}
        stages:
          ingest:
            uses: ingest
            with: {source: mnist-5k}
            outs: [{hangar: [x]}]
    """)
    line = user_error(project.hpipe("status", check=None))
    assert "stages.ingest.outs[0].hangar: this stage writes data.repo, but data.ref" in line


def test_params_key_removed_by_an_upstream_stage_fails_that_stage(project: Project) -> None:
    project.pipeline("""
        stages:
          gen:
            cmd: 'echo "other: 1" > p.yaml'
            outs: [p.yaml]
          use:
            cmd: echo used > used.txt
            params: [{p.yaml: [k]}]
            outs: [used.txt]
    """)
    project.write("p.yaml", "k: 1\n")
    done = project.hpipe("repro", "-k", check=1)
    assert "✓ gen" in done.out and "✗ use: failed" in done.out and "key 'k' not found in p.yaml" in done.out
    assert "gen" in (project.root / "pipeline.lock").read_text()
