"""Symbolic links never let hpipe write, delete or chmod outside the project (issue 10, items 1-3).

Each test runs the real `hpipe` in a temp project, with an `outside` folder beside it holding a
private (0600) file, and checks that the file's bytes and mode are unchanged and that nothing
was created there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Project, user_error


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    secret = folder / "secret.txt"
    secret.write_text("private")
    secret.chmod(0o600)
    return folder


def untouched(outside: Path, *extra: str) -> None:
    """The outside folder holds its private file as it was, and nothing else (but `extra`)."""
    assert sorted(p.name for p in outside.iterdir()) == sorted(["secret.txt", *extra])
    secret = outside / "secret.txt"
    assert secret.read_text() == "private"
    assert secret.stat().st_mode & 0o777 == 0o600


def fit_stage(project: Project, out: str = "ldir/esc.out") -> None:
    """A stage with a dep (so the run cache keeps it) writing one file out."""
    project.write("params.yaml", "lr: 0.1\n")
    project.write("fit.py", f"""
        import os, yaml
        os.makedirs(os.path.dirname("{out}") or ".", exist_ok=True)
        open("{out}", "w").write("lr=" + str(yaml.safe_load(open("params.yaml"))["lr"]))
    """)
    project.pipeline(f"""
        stages:
          fit:
            cmd: python fit.py
            deps: [fit.py]
            params: [lr]
            outs: [{out}]
    """)


# -- 1. outputs and wdir through a linked folder --------------------------------------------------

def test_an_output_in_a_folder_linked_outside_is_refused_at_load(project: Project, outside: Path) -> None:
    (project.root / "ldir").symlink_to(outside)
    fit_stage(project)
    for command in ("repro", "status"):
        line = user_error(project.hpipe(command, check=None))
        assert line.startswith("hpipe: error: pipeline.yaml:6: stages.fit.outs[0]: output"
                               " 'ldir/esc.out' is outside the project: 'ldir' is a symbolic link to")
    untouched(outside)


def test_the_run_cache_never_restores_through_a_folder_linked_outside(project: Project, outside: Path) -> None:
    fit_stage(project)
    project.hpipe("repro")  # ldir is a real folder: the run is cached
    shutil.rmtree(project.root / "ldir")
    (project.root / "ldir").symlink_to(outside)
    line = user_error(project.hpipe("repro", check=None))
    assert "stages.fit.outs[0]: output 'ldir/esc.out' is outside the project" in line
    untouched(outside)


def test_a_wdir_linked_outside_is_refused(project: Project, outside: Path) -> None:
    (project.root / "ldir").symlink_to(outside)
    project.pipeline("""
        stages:
          esc:
            cmd: echo escaped > esc.out
            wdir: ldir
            outs: [esc.out]
    """)
    line = user_error(project.hpipe("repro", check=None))
    assert line.startswith("hpipe: error: pipeline.yaml:4: stages.esc.wdir: folder 'ldir' is"
                           " outside the project: 'ldir' is a symbolic link to")
    untouched(outside)


def test_links_that_stay_inside_the_project_are_fine(project: Project) -> None:
    (project.root / "real").mkdir()
    (project.root / "ldir").symlink_to("real")
    project.pipeline("""
        stages:
          inside:
            cmd: echo ok > out.txt
            wdir: ldir
            outs: [out.txt]
    """)
    project.hpipe("repro")
    assert project.read("real/out.txt") == "ok\n"


# -- 2. an output that is itself a link out ---------------------------------------------------------

def test_a_run_removes_an_output_link_not_its_target(project: Project, outside: Path) -> None:
    fit_stage(project, "model.txt")
    (project.root / "model.txt").symlink_to(outside / "secret.txt")
    project.hpipe("repro")
    assert not (project.root / "model.txt").is_symlink() and project.read("model.txt") == "lr=0.1"
    untouched(outside)


def test_a_restore_replaces_an_output_file_link(project: Project, outside: Path) -> None:
    fit_stage(project, "model.txt")
    project.hpipe("repro")
    (project.root / "model.txt").unlink()
    (project.root / "model.txt").symlink_to(outside / "secret.txt")
    assert "↺ fit: restored" in project.hpipe("repro").out
    assert not (project.root / "model.txt").is_symlink() and project.read("model.txt") == "lr=0.1"
    untouched(outside)


def test_a_restore_replaces_an_output_folder_link(project: Project, outside: Path) -> None:
    fit_stage(project, "out/model.txt")
    project.pipeline(project.read("pipeline.yaml").replace("outs: [out/model.txt]", "outs: [out]"))
    project.hpipe("repro")
    shutil.rmtree(project.root / "out")
    (project.root / "out").symlink_to(outside)
    assert "↺ fit: restored" in project.hpipe("repro").out
    assert not (project.root / "out").is_symlink() and project.read("out/model.txt") == "lr=0.1"
    untouched(outside)


# -- 3. links inside .hpipe/ ----------------------------------------------------------------------

def link_the_cache_object(project: Project, outside: Path) -> Path:
    """Replace the cached model with a link to the outside private file; the link's path."""
    objects = project.root / ".hpipe/cache/objects"
    obj = next(p for p in objects.rglob("*") if p.is_file() and p.read_bytes() == b"lr=0.1")
    obj.unlink()
    obj.symlink_to(outside / "secret.txt")
    return obj


def test_a_linked_cache_object_is_removed_not_followed_on_restore(project: Project, outside: Path) -> None:
    fit_stage(project, "model.txt")
    project.hpipe("repro")
    obj = link_the_cache_object(project, outside)
    (project.root / "model.txt").unlink()
    done = project.hpipe("repro")
    assert "is a symbolic link; removed (never followed), the stage runs" in done.err
    assert project.ran(done) == ["fit"] and project.read("model.txt") == "lr=0.1"
    assert obj.is_file() and not obj.is_symlink(), "the run stored a good object in its place"
    untouched(outside)


def test_gc_removes_a_linked_cache_object_without_chmod(project: Project, outside: Path) -> None:
    fit_stage(project, "model.txt")
    project.hpipe("repro")
    project.write("params.yaml", "lr: 0.2\n")
    project.hpipe("repro")
    obj = link_the_cache_object(project, outside)  # lr=0.1's model: only the run cache keeps it
    project.hpipe("gc", "--keep-runs", "1")
    assert not obj.is_symlink() and not obj.exists()
    untouched(outside)


def test_a_folder_linked_out_after_preflight_fails_the_stage_and_writes_nothing(
        project: Project, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write-time checks hold on their own (a link made between preflight and the write)."""
    from hangar_pipe.core import repro
    from hangar_pipe.pipeline import Pipeline

    fit_stage(project)
    project.hpipe("repro")
    shutil.rmtree(project.root / "ldir")
    (project.root / "ldir").symlink_to(outside)
    monkeypatch.setattr(repro, "preflight", lambda ctx, order: None)
    restore = Pipeline.load(project.root).repro().stages[0]  # the run cache's restore refuses
    assert restore.state == "failed" and "outside the project" in (restore.error or "")
    project.write("params.yaml", "lr: 0.2\n")
    launch = Pipeline.load(project.root).repro().stages[0]  # so does the run (no removal)
    assert launch.state == "failed" and "outside the project" in (launch.error or "")
    untouched(outside)
