"""Resume folders in-process: path-safe stage names, making and dropping a folder, and which ones
gc takes as orphans."""

from __future__ import annotations

from pathlib import Path

from hangar_pipe.core import stage_state
from hangar_pipe.core.layout import path_safe
from hangar_pipe.core.layout import stage_state as state_path


def test_stage_names_become_one_folder_name_each() -> None:
    assert path_safe("train") == "train" and path_safe("eval-2.b_c") == "eval-2.b_c"
    odd = ["a/b", "a_b/", "../x", ".hidden", "", "a b", "x" * 200, "ü"]
    names = [path_safe(n) for n in odd]
    assert all("/" not in n and n and not n.startswith(".") and len(n) <= 100 for n in names), names
    assert len(set(names)) == len(odd) and path_safe("a/b") != path_safe("a_b")
    assert path_safe("a/b").startswith("a_b-")


def test_prepare_makes_the_folder_fresh_empties_it_and_drop_removes_it(tmp_path: Path) -> None:
    folder = stage_state.prepare(tmp_path, "train", "k1")
    assert folder == tmp_path / ".hpipe/state/train/k1" == state_path(tmp_path, "train", "k1")
    (folder / "epoch").write_text("3")
    assert stage_state.prepare(tmp_path, "train", "k1") == folder and (folder / "epoch").exists()
    stage_state.prepare(tmp_path, "train", "k2")
    assert not any(stage_state.prepare(tmp_path, "train", "k1", fresh=True).iterdir())
    stage_state.drop(tmp_path, "train", "k1")
    assert not folder.exists() and (tmp_path / ".hpipe/state/train/k2").is_dir()
    stage_state.drop(tmp_path, "train", "k2")
    assert not (tmp_path / ".hpipe/state/train").exists(), "the stage's folder goes once empty"
    stage_state.drop(tmp_path, "train", "k3")  # none: nothing to do


def test_a_link_where_a_folder_belongs_is_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private").write_text("keep")
    project = tmp_path / "project"
    (project / ".hpipe/state").mkdir(parents=True)
    (project / ".hpipe/state/train").symlink_to(outside)
    folder = stage_state.prepare(project, "train", "k1")
    assert folder.is_dir() and not folder.parent.is_symlink()
    (project / ".hpipe/state/evaluate").symlink_to(outside)
    assert stage_state.orphans(project, {"train": "k1"}) == [project / ".hpipe/state/evaluate"]
    stage_state.collect(project, {"train": "k1"}, dry_run=False)
    assert sorted(p.name for p in outside.iterdir()) == ["private"] and (outside / "private").read_text() == "keep"


def test_orphans_are_gone_stages_and_other_run_keys(tmp_path: Path) -> None:
    for stage, key in [("train", "old"), ("train", "now"), ("gone", "k"), ("unknown", "k"), ("a/b", "x")]:
        (stage_state.prepare(tmp_path, stage, key) / "state.bin").write_bytes(b"12345")
    (tmp_path / ".hpipe/state/stray.txt").write_text("?")
    current = {"train": "now", "unknown": None, "a/b": "y"}  # None: its key cannot be told now: kept
    base = tmp_path / ".hpipe/state"
    expected = sorted([base / path_safe("a/b") / "x", base / "gone", base / "stray.txt", base / "train/old"])
    assert sorted(stage_state.orphans(tmp_path, current)) == expected
    dry = stage_state.collect(tmp_path, current, dry_run=True)
    assert (dry.folders, dry.bytes) == (4, 16) and all(p.exists() for p in expected)
    done = stage_state.collect(tmp_path, current, dry_run=False)
    assert (done.folders, done.bytes) == (4, 16)
    assert sorted(str(p.relative_to(base)) for p in base.rglob("*")) == [
        "train", "train/now", "train/now/state.bin", "unknown", "unknown/k", "unknown/k/state.bin"]
    assert stage_state.orphans(tmp_path / "none", {}) == []
