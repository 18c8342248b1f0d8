"""Templated pipelines through the real `hpipe`: generated stages in status, dag and repro; a
template error is one line, exit 2. (Every form and error in-process: test_unit_template.py.)"""

from __future__ import annotations

import json

from conftest import Project, user_error


def test_generated_stages_run_and_show_everywhere(project: Project) -> None:
    project.write("params.yaml", "sizes: [1, 2]\nmodels: {small: 3, big: 5}\n")
    project.pipeline("""
        vars:
          - greeting: hello
        stages:
          prep:
            foreach: ${models}
            do:
              cmd: echo ${greeting} ${key} ${item} > prep_${key}.txt
              outs:
                - prep_${key}.txt
          train:
            matrix:
              model: [small, big]
              size: ${sizes}
            cmd: cat prep_${item.model}.txt > train_${item.model}_${item.size}.txt
            deps:
              - prep_${item.model}.txt
            outs:
              - train_${item.model}_${item.size}.txt
    """)
    names = ["prep@small", "prep@big", "train@small-1", "train@small-2", "train@big-1", "train@big-2"]
    status = json.loads(project.hpipe("status", "--json").out)
    assert list(status) == names
    dag = project.hpipe("dag").out
    assert all(name in dag for name in names) and "train@big-2" in dag.split("prep@big")[1]
    done = project.hpipe("repro", "train@big-2")
    assert project.ran(done) == ["prep@big", "train@big-2"]
    assert project.read("train_big_2.txt") == "hello big 5\n"
    assert sorted(project.ran(project.hpipe("repro", "train"))) == ["prep@small", "train@big-1",
                                                                   "train@small-1", "train@small-2"]
    project.write("params.yaml", "sizes: [1, 2]\nmodels: {small: 4, big: 5}\n")  # a var changed: its stages rerun
    assert project.ran(project.hpipe("repro")) == ["prep@small", "train@small-1", "train@small-2"]


def test_a_template_error_is_one_line(project: Project) -> None:
    project.pipeline("""
        stages:
          prep:
            foreach: [a, b]
            do:
              cmd: echo ${itme}
    """)
    line = user_error(project.hpipe("status", check=None))
    assert line == ("hpipe: error: pipeline.yaml:5: stages.prep.do.cmd: undefined variable 'itme' in"
                    " '${itme}' (did you mean 'item'?)")
