"""Params forms through the real hpipe (issue 9): a whole params file, TOML and JSON files (key lists
and whole), and bad params files as one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from conftest import Project, user_error


def reasons(project: Project) -> dict[str, dict[str, object]]:
    return json.loads(project.hpipe("status", "--json").out)


def lock_params(project: Project, stage: str) -> dict[str, object]:
    return yaml.safe_load(project.read("pipeline.lock"))["stages"][stage]["params"]


def git_commit(project: Project) -> None:
    subprocess.run("git init -q 2>/dev/null; git add -A && git -c user.email=t@t -c user.name=t"
                   " commit -qm base", shell=True, cwd=project.root, check=True)


def test_a_whole_params_file(project: Project) -> None:
    project.write("params.yaml", "train: {lr: 0.1, epochs: 3}\nseed: 1\n")
    project.write("custom.yaml", "size: 4\n")
    project.pipeline("""
        stages:
          whole:
            cmd: echo w > w.txt
            params: [{params.yaml: }]
            outs: [w.txt]
          custom:
            cmd: echo c > c.txt
            params:
              - custom.yaml:
            outs: [c.txt]
    """)
    project.hpipe("repro")
    assert lock_params(project, "whole") == {"params.yaml": {"seed": 1, "train": {"lr": 0.1, "epochs": 3}}}
    assert "params.yaml:\n        seed: 1\n        train:\n" in project.read("pipeline.lock"), "sorted keys"
    project.write("params.yaml", "train: {lr: 0.2, epochs: 3}\nseed: 1\n")
    assert reasons(project) == {"whole": {"changed params": {"params.yaml": {"train.lr": "modified"}}}}
    done = project.hpipe("repro")
    assert project.ran(done) == ["whole"] and "train.lr (modified)" in done.out
    project.write("custom.yaml", "size: 4\nnew: {key: 1}\n")
    assert reasons(project) == {"custom": {"changed params": {"custom.yaml": {"new.key": "new"}}}}
    rows = json.loads(project.hpipe("params", "diff", "--json").out)
    assert [(r["file"], r["name"], r["old"], r["new"]) for r in rows] == [("custom.yaml", "new.key", None, 1)]
    project.write("custom.yaml", "new: {key: 1}\n")
    assert reasons(project) == {"custom": {"changed params": {"custom.yaml": {"new.key": "new",
                                                                             "size": "deleted"}}}}
    assert json.loads(project.hpipe("params", "show", "--json").out) == {
        "params.yaml": {"train.lr": 0.2, "train.epochs": 3, "seed": 1}, "custom.yaml": {"new.key": 1}}
    project.write("params.yaml", "# a comment\nseed: 1\ntrain: {epochs: 3, lr: 0.2}\n")
    assert "whole" not in reasons(project), "order and comments are not values"


def test_toml_key_list_and_whole_file(project: Project) -> None:
    project.write("config.toml", 'seed = 1\nday = 2024-05-01\n[train]\nlr = 0.1\n[train.opt]\nname = "sgd"\n')
    project.pipeline("""
        stages:
          keys:
            cmd: echo k > k.txt
            params:
              - config.toml: [train.lr, train.opt]
            outs: [k.txt]
          whole:
            cmd: echo w > w.txt
            params: [{config.toml: }]
            outs: [w.txt]
    """)
    project.hpipe("repro")
    assert lock_params(project, "keys") == {"config.toml": {"train.lr": 0.1, "train.opt": {"name": "sgd"}}}
    assert lock_params(project, "whole")["config.toml"]["day"] == "2024-05-01"
    git_commit(project)
    project.write("config.toml", 'seed = 2\nday = 2024-05-01\n[train]\nlr = 0.1\n[train.opt]\nname = "adam"\n')
    assert reasons(project) == {
        "keys": {"changed params": {"config.toml": {"train.opt.name": "modified"}}},
        "whole": {"changed params": {"config.toml": {"seed": "modified", "train.opt.name": "modified"}}}}
    done = project.hpipe("repro")
    assert sorted(project.ran(done)) == ["keys", "whole"]
    rows = json.loads(project.hpipe("params", "diff", "HEAD", "--json").out)
    assert [(r["name"], r["old"], r["new"]) for r in rows] == [("seed", 1, 2), ("train.opt.name", "sgd", "adam")]
    shown = json.loads(project.hpipe("params", "show", "--json").out)["config.toml"]
    assert shown["train.lr"] == 0.1 and shown["day"] == "2024-05-01"


def test_json_key_list_and_whole_file(project: Project) -> None:
    project.write("config.json", '{"train": {"lr": 1e-3, "layers": [8, 4]}, "seed": 1}')
    project.pipeline("""
        stages:
          keys:
            cmd: echo k > k.txt
            params: [{config.json: [train.lr, train.layers.0]}]
            outs: [k.txt]
          whole:
            cmd: echo w > w.txt
            params: [{config.json: }]
            outs: [w.txt]
    """)
    project.hpipe("repro")
    assert lock_params(project, "keys") == {"config.json": {"train.layers.0": 8, "train.lr": 0.001}}
    project.write("config.json", '{"train": {"lr": 1e-3, "layers": [8, 2]}, "seed": 1, "extra": true}')
    assert reasons(project) == {
        "whole": {"changed params": {"config.json": {"extra": "new", "train.layers": "modified"}}}}
    done = project.hpipe("repro")
    assert project.ran(done) == ["whole"]
    project.write("config.json", '{"train": {"lr": 0.01, "layers": [8, 2]}, "seed": 1, "extra": true}')
    assert sorted(reasons(project)) == ["keys", "whole"]


def test_bad_params_files_are_one_line(project: Project) -> None:
    project.pipeline("""
        stages:
          a:
            cmd: echo a
            params: [{config.toml: [train.lr]}, {config.json: }]
    """)
    project.write("config.toml", "[train]\nlr = \n")
    project.write("config.json", '{"a": 1}')
    assert user_error(project.hpipe("status", check=None)) == (
        "hpipe: error: config.toml:2: invalid TOML: Invalid value (column 6)")
    project.write("config.toml", "[train]\nepochs = 1\n")
    assert user_error(project.hpipe("repro", check=None)) == (
        "hpipe: error: pipeline.yaml:4: stages.a.params[0].config.toml[0]: key 'train.lr' not found"
        " in config.toml")
    project.write("config.toml", "[train]\nlr = 1\n")
    project.write("config.json", '{"a": 1,\n "b": }')
    assert user_error(project.hpipe("status", check=None)) == (
        "hpipe: error: config.json:2: invalid JSON: Expecting value (column 7)")
    project.write("config.json", "[1]")
    assert user_error(project.hpipe("status", check=None)) == (
        "hpipe: error: pipeline.yaml:4: stages.a.params[1].config.json: config.json holds list, not a"
        " mapping of params")
    project.pipeline("stages:\n  a:\n    cmd: echo a\n    params:\n      - config.ini:\n")
    assert user_error(project.hpipe("status", check=None)) == (
        "hpipe: error: pipeline.yaml:5: stages.a.params[0].config.ini: params file 'config.ini':"
        " unsupported type (use .yaml, .yml, .json, .toml)")


def test_noop_status_imports_toml_only_when_declared(project: Project) -> None:
    project.write("params.yaml", "lr: 1\n")
    project.write("config.toml", "lr = 1\n")
    code = ("import sys, runpy; sys.argv = ['hpipe', 'status'];\n"
            "try: runpy.run_module('hangar_pipe.cli', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'hangar', 'tomllib', 'tomli') if m in sys.modules))")
    for params, imported in (("[lr]", "[]"), ("[{config.toml: }]", "['tomllib']")):
        project.pipeline(f"stages:\n  a: {{cmd: echo a > a, params: {params}, outs: [a]}}\n")
        project.hpipe("repro")
        out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                             text=True, check=True).stdout
        assert "up to date" in out and out.strip().endswith(imported if sys.version_info >= (3, 11)
                                                            else imported.replace("tomllib", "tomli")), out
