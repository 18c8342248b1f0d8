"""`hpipe push --history` / `pull --history`: the run history through a folder remote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import Project


def test_run_history_moves_to_another_clone(three_stage: Project, tmp_path: Path) -> None:
    a = three_stage
    a.hpipe("repro")
    a.write("params.yaml", a.read("params.yaml").replace("lr: 0.1", "lr: 0.2"))
    a.hpipe("repro")
    a.hpipe("remote", "add", "origin", str(tmp_path / "remote"), "--default")
    done = a.hpipe("push", "--history")
    assert "and 2 run records to 'origin'" in done.out, done.out
    assert "2 run records" in a.hpipe("push", "--history").out  # already there

    b = Project(tmp_path / "b")
    b.root.mkdir()
    for name in ("pipeline.yaml", "pipeline.lock", "params.yaml", "steps.py", "raw.txt", "hpipe.yaml"):
        shutil.copy(a.root / name, b.root / name)
    (tmp_path / "remote" / "runs" / "20990101-000000-dead.json").write_text("{not json")
    done = b.hpipe("pull", "--history")
    assert "and 2 run records from 'origin'" in done.out, done.out
    assert "run record 20990101-000000-dead in remote 'origin' is damaged; not used" in done.err
    runs_a = json.loads(a.hpipe("runs", "--json").out)
    runs_b = json.loads(b.hpipe("runs", "--json").out)
    assert runs_b == runs_a  # the same records, params and metrics included
    assert "2 run records" in b.hpipe("pull", "--history").out  # nothing new: nothing doubled
    assert len(json.loads(b.hpipe("runs", "--json").out)) == 2
