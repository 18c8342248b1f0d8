"""Issue 10, items 10-12: bad ingest sources, `with:` keys, unknown refs and other plain bad input
are one line (a stage's own line when the stage fails), never a traceback."""

from __future__ import annotations

import gzip
import importlib
import inspect
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, Done, Project, user_error
from hangar_repo import Repo, images, labels

from hangar_pipe.core.spec import BUILTIN_STAGES, callable_params, find_module_file
from hangar_pipe.errors import UserError
from hangar_pipe.stages import ingest


def failed_with(done: Done, stage: str = "ingest") -> str:
    """A built-in stage failed on bad input: exit 1, its one line on stderr, no traceback."""
    assert done.code == 1 and f"✗ {stage}: failed" in done.out and "exited with code 2" in done.out, done
    assert "Traceback" not in done.out + done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    return lines[0]


def _npz(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path, **arrays)


def _idx(path: Path, array: np.ndarray, cut: int = 0) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(data[:len(data) - cut])


X = np.random.default_rng(0).integers(0, 256, size=(12, 4, 4), dtype=np.uint8)
Y = (np.arange(12) % 3).astype(np.uint8)


def _truncated_npz(root: Path) -> None:
    _npz(root / "raw.npz", x=X, y=Y)
    data = (root / "raw.npz").read_bytes()
    (root / "raw.npz").write_bytes(data[:len(data) // 2])


def _csv(text: str):
    return lambda root: (root / "raw.csv").write_text(text)


#: name -> (make the source in the project, `source:` value, what the stage's line says)
SOURCES = {
    "truncated npz": (_truncated_npz, "raw.npz", "raw.npz: not a valid NPZ file (truncated or damaged"),
    "object npz": (lambda r: _npz(r / "raw.npz", x=np.array([[1], [1, 2]], dtype=object), y=Y[:2]),
                   "raw.npz", "raw.npz: holds object arrays (pickled Python objects)"),
    "empty npz": (lambda r: _npz(r / "raw.npz", x=np.zeros((0, 16)), y=np.zeros(0)),
                  "raw.npz", "raw.npz: no samples"),
    "truncated idx": (lambda r: (_idx(r / "img.idx", X, cut=7), _idx(r / "lab.idx", Y)),
                      "{images: img.idx, labels: lab.idx}",
                      "img.idx: truncated IDX file: its header says 12x4x4 uint8 values (192 bytes), it holds 185"),
    "ragged csv": (_csv("a,b,label\n1,2,0\n3,4\n"), "raw.csv",
                   "raw.csv: line 3: 2 values, the rows above have 3"),
    "non-numeric csv": (_csv("a,b,label\n1,2,0\n3,x,1\n"), "raw.csv",
                        "raw.csv: line 3, column 2: 'x' is not a number"),
    "header-only csv": (_csv("a,b,label\n"), "raw.csv", "raw.csv: no data rows (only a header)"),
    "gz that is not gzip": (lambda r: (r / "raw.csv.gz").write_text("a,label\n1,0\n"), "raw.csv.gz",
                            "raw.csv.gz: not a valid gzip file"),
    "folder": (lambda r: (r / "raw.npz").mkdir(), "raw.npz", "source raw.npz: is a folder; expected a file"),
}


@pytest.mark.parametrize("case", SOURCES)
def test_a_bad_ingest_source_is_the_stages_one_line(project: Project, case: str) -> None:
    make, source, says = SOURCES[case]
    make(project.root)
    project.pipeline(f"""
        stages:
          ingest:
            uses: ingest
            with: {{source: {source}, splits: {{training: 0.5, test: 0.5}}}}
            outs: [{{hangar: [mnist_training_images, mnist_training_labels]}}]
    """)
    line = failed_with(project.hpipe("repro", check=None))
    assert line.startswith(f"hpipe: error: {says}"), line


def test_a_prefix_hangar_refuses_fails_before_reading(project: Project) -> None:
    _npz(project.root / "raw.npz", x=X, y=Y)
    project.pipeline("""
        stages:
          ingest:
            uses: ingest
            with: {source: raw.npz, prefix: 'a b/c'}
            outs: [{hangar: [mnist_training_images]}]
    """)
    line = failed_with(project.hpipe("repro", check=None))
    assert line == ("hpipe: error: prefix: column name 'a b/c_training_images' is not one Hangar accepts"
                    " (ASCII letters, digits, _ . - only, at most 64 characters)")


def test_every_source_error_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam: load_source raises UserError naming the file, for each case, and a missing one."""
    monkeypatch.chdir(tmp_path)
    for make, source, says in SOURCES.values():
        for leftover in (*tmp_path.glob("raw.*"), *tmp_path.glob("*.idx")):
            leftover.rmdir() if leftover.is_dir() else leftover.unlink()
        make(tmp_path)
        value = {"images": "img.idx", "labels": "lab.idx"} if source.startswith("{") else source
        with pytest.raises(UserError, match="^" + says.replace("(", r"\(").replace(")", r"\)")):
            ingest.load_source(value)
    for missing in ("gone.npz", {"images": "gone.npy", "labels": "gone2.npy"}):
        with pytest.raises(UserError, match="^source file not found: gone.npy$|^source file not found: gone.npz$"):
            ingest.load_source(missing)
    (tmp_path / "raw.csv").write_text("a,label\n1,0\n")
    with pytest.raises(UserError, match="label: column 5 is out of range"):
        ingest.load_source("raw.csv", label=5)


# -- with: checked when the pipeline is loaded ---------------------------------------------------

INGEST_WITH = """
    stages:
      ingest:
        uses: ingest
        with:
          WITH
        outs: [{hangar: [mnist_training_images]}]
"""


def test_an_unknown_with_key_is_a_load_time_error(project: Project) -> None:
    _npz(project.root / "raw.npz", x=X, y=Y)
    project.pipeline(INGEST_WITH.replace("WITH", "sourc: raw.npz"))
    for command in ("status", "repro", "dag"):
        line = user_error(project.hpipe(command, check=None))
        assert line == ("hpipe: error: pipeline.yaml:5: stages.ingest.with.sourc: unknown key for uses:"
                        " ingest (known: source, splits, seed, prefix, label, images, labels, backend,"
                        " scale) (did you mean 'source'?)")
    project.pipeline(INGEST_WITH.replace("WITH", "seed: 1"))
    line = user_error(project.hpipe("status", check=None))
    assert line.startswith("hpipe: error: pipeline.yaml:2: stages.ingest.with: uses: ingest needs"
                           " 'source' in with: (known: source, "), line


def test_with_keys_of_train_and_evaluate_are_checked_without_importing_torch(project: Project) -> None:
    project.pipeline("""
        stages:
          train:
            uses: train
            with: {epochs: 3}
    """)
    line = user_error(project.hpipe("status", check=None))
    assert "stages.train.with.epochs: unknown key for uses: train (known: images, labels," in line
    project.pipeline("stages:\n  evaluate:\n    uses: evaluate\n    with: {confusion: c.csv}\n")
    code = textwrap.dedent("""
        import sys
        from hangar_pipe.pipeline import Pipeline
        Pipeline.load()
        print(sorted(m for m in ('torch', 'hangar', 'numpy') if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                         text=True, check=True, env=ENV).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ["ingest", "train", "evaluate"])
def test_callable_params_read_the_signature_from_source(name: str) -> None:
    """The seam: a built-in's keys, read without importing it, are its run() signature's."""
    module, _, attr = BUILTIN_STAGES[name].partition(":")
    file = find_module_file(module, [])
    assert file is not None
    accepted, required = callable_params(file, attr) or ([], [])
    signature = inspect.signature(getattr(importlib.import_module(module), attr))
    assert accepted == list(signature.parameters)
    assert required == [p.name for p in signature.parameters.values() if p.default is p.empty]


def test_callable_params_unknown_for_kwargs_and_missing(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def f(a, *, b=1, c): pass\ndef g(a, **kw): pass\n")
    assert callable_params(str(tmp_path / "m.py"), "f") == (["a", "b", "c"], ["a", "c"])
    assert callable_params(str(tmp_path / "m.py"), "g") is None
    assert callable_params(str(tmp_path / "m.py"), "h") is None


# -- refs of Hangar deps -----------------------------------------------------------------------

WRITER_AND_READER = """
    stages:
      make:
        cmd: "true"
        outs: [{hangar: OUT}]
      train:
        cmd: echo "$HPIPE_DATA_COMMIT" > model.txt
        deps: [{hangar: {ref: no_such_branch, columns: [imgs]}}]
        outs: [model.txt]
"""


@pytest.fixture
def data(project: Project) -> Repo:
    repo = Repo(project.root)
    repo.write("first", imgs=images(4), labels=labels(4))
    repo.branch("dev")
    return repo


def test_an_unknown_ref_on_a_dep_is_an_error_listing_the_branches(project: Project, data: Repo) -> None:
    """Even when a writer stage writes the columns, a ref no stage creates is an error, before
    anything runs, not a stage run on master's commit with no deps in the lock."""
    project.pipeline(WRITER_AND_READER.replace("OUT", "[imgs]"))
    for command in ("status", "repro"):
        line = user_error(project.hpipe(command, check=None))
        assert line.startswith("hpipe: error: pipeline.yaml:7: stages.train.deps[0]: unknown ref"
                               " 'no_such_branch' in the Hangar repository"), line
        assert "branches: dev, master;" in line
    assert not project.exists("model.txt")
    project.pipeline(WRITER_AND_READER.replace("OUT", "{columns: [imgs], ref: no_such_branch}"))
    assert "train: would run" in project.hpipe("status").out  # a writer names it: it creates it
    project.pipeline(WRITER_AND_READER.replace("OUT", "[imgs]").replace("no_such_branch", "dev"))
    assert "train: would run" in project.hpipe("status").out


def test_an_empty_data_ref_or_repo_is_one_line(project: Project) -> None:
    project.pipeline("data: {ref: ''}\nstages:\n  a: {cmd: 'true'}\n")
    assert user_error(project.hpipe("status", check=None)) == (
        "hpipe: error: pipeline.yaml:1: data.ref: expected a branch name or commit digest, got an empty string")
    project.pipeline("data: {repo: ' '}\nstages:\n  a: {cmd: 'true'}\n")
    assert "data.repo: expected a folder path, got an empty string" in user_error(
        project.hpipe("status", check=None))


# -- minor ---------------------------------------------------------------------------------------

def test_a_wdir_that_does_not_exist_is_an_error_before_anything_runs(project: Project) -> None:
    """The stage's own output inside its wdir does not make the folder exist."""
    project.pipeline("""
        stages:
          a:
            cmd: echo hi > out.txt
            wdir: nosuch
            outs: [out.txt]
    """)
    for command in ("status", "repro"):
        assert user_error(project.hpipe(command, check=None)) == (
            "hpipe: error: pipeline.yaml:4: stages.a.wdir: folder 'nosuch' does not exist")
    project.pipeline(project.read("pipeline.yaml").replace("stages:\n", "stages:\n  b:\n    cmd: mkdir -p"
                                                           " nosuch && touch nosuch/m\n    outs: [nosuch/m]\n"))
    project.hpipe("repro")  # made by another stage: fine
    assert project.read("nosuch/out.txt") == "hi\n"


def test_an_empty_pipeline_with_a_lock_says_so(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    three_stage.write("pipeline.yaml", "")
    for command in ("status", "repro", "commit"):
        assert user_error(three_stage.hpipe(command, check=None)) == (
            "hpipe: error: pipeline.yaml defines no stages (pipeline.lock records 3: evaluate, prepare,"
            " train); add stages, or delete pipeline.lock to forget them")
    assert "evaluate" in three_stage.read("pipeline.lock")
    (three_stage.root / "pipeline.lock").unlink()
    assert three_stage.hpipe("status").out.strip() == "Everything is up to date."


def test_runs_n_must_be_positive(three_stage: Project) -> None:
    for args in (("runs", "-n", "-5"), ("runs", "-n", "0"), ("metrics", "show", "--runs", "-n", "-1")):
        assert "-n: must be 1 or more, got" in user_error(three_stage.hpipe(*args, check=None))


def test_an_empty_data_commit_is_an_error(three_stage: Project) -> None:
    for command in ("repro", "status"):
        assert user_error(three_stage.hpipe(command, "--data-commit", "", check=None)) == (
            "hpipe: error: --data-commit: expected a branch or commit, got an empty string")
    assert not three_stage.exists("pipeline.lock")


def test_gzip_source_cut_short(tmp_path: Path) -> None:
    """A .csv.gz cut short is one line too."""
    data = gzip.compress(b"a,label\n" + b"".join(b"%d,1\n" % i for i in range(2000)))
    (tmp_path / "raw.csv.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="raw.csv.gz"):
        ingest.load_source(str(tmp_path / "raw.csv.gz"))
