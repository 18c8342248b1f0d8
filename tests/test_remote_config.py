"""The named remotes: hpipe.yaml (committed) and hpipe.local.yaml (credentials, git-ignored)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import Project, user_error

from hangar_pipe.errors import UserError
from hangar_pipe.remote import config

PIPELINE = "stages:\n  a:\n    cmd: echo hi\n"


def _git_project(project: Project) -> Project:
    subprocess.run(["git", "init", "-q"], cwd=project.root, check=True)
    project.pipeline(PIPELINE)
    return project


def test_add_list_remove_through_the_cli(project: Project) -> None:
    _git_project(project)
    project.hpipe("remote", "add", "origin", "/srv/hpipe-cache", "--default")
    project.hpipe("remote", "add", "s3", "s3://team-bucket/hpipe")
    project.hpipe("remote", "modify", "s3", "endpoint_url", "http://127.0.0.1:9000")
    project.hpipe("remote", "modify", "s3", "secret_access_key", "SEKRET")
    shared = yaml.safe_load(project.read("hpipe.yaml"))
    assert shared == {"remotes": {"origin": {"url": "/srv/hpipe-cache"},
                                  "s3": {"url": "s3://team-bucket/hpipe", "endpoint_url": "http://127.0.0.1:9000"}},
                      "default_remote": "origin"}
    assert "SEKRET" not in project.read("hpipe.yaml")  # credentials never go in the committed file
    assert yaml.safe_load(project.read("hpipe.local.yaml")) == {"remotes": {"s3": {"secret_access_key": "SEKRET"}}}
    assert "/hpipe.local.yaml" in project.read(".gitignore").splitlines()
    ignored = subprocess.run(["git", "check-ignore", "-q", "hpipe.local.yaml"], cwd=project.root)
    assert ignored.returncode == 0

    listed = project.hpipe("remote", "list").out
    assert "* origin" in listed and "secret_access_key=***" in listed and "SEKRET" not in listed
    project.hpipe("remote", "remove", "s3")
    assert "s3" not in project.read("hpipe.yaml") and "SEKRET" not in project.read("hpipe.local.yaml")
    assert "origin" in project.hpipe("remote", "list", "--json").out


def test_bad_remote_commands_are_one_line(project: Project) -> None:
    _git_project(project)
    assert "malformed remote URL" in user_error(project.hpipe("remote", "add", "x", "s3://", check=None))
    assert "malformed remote URL" in user_error(project.hpipe("remote", "add", "x", "ht!p://h/p", check=None))
    assert "bad remote name" in user_error(project.hpipe("remote", "add", "a b", "/tmp/r", check=None))
    project.hpipe("remote", "add", "origin", "/tmp/r")
    assert "exists" in user_error(project.hpipe("remote", "add", "origin", "/tmp/q", check=None))
    line = user_error(project.hpipe("remote", "remove", "orign", check=None))
    assert "unknown remote 'orign'" in line and "did you mean 'origin'" in line
    project.hpipe("remote", "add", "origin", "/tmp/q", "--force")
    assert config.resolve(project.root, None).url == "/tmp/q"  # the only remote is the default


def test_the_local_file_wins_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "hpipe.yaml").write_text(
        "remotes:\n  origin: {url: s3://b/p, region: eu-west-1}\n  other: {url: /x}\ndefault_remote: origin\n")
    (tmp_path / "hpipe.local.yaml").write_text(
        "remotes:\n  origin: {region: us-east-1, access_key_id: AK}\ndefault_remote: other\n")
    remotes, default = config.load_remotes(tmp_path)
    assert default == "other"
    assert remotes["origin"] == config.RemoteConfig("origin", "s3://b/p",
                                                    {"region": "us-east-1", "access_key_id": "AK"})
    assert config.resolve(tmp_path, None).name == "other"


def test_no_remote_and_unknown_remote(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no remote is configured"):
        config.resolve(tmp_path, None)
    (tmp_path / "hpipe.yaml").write_text("remotes:\n  a: {url: /x}\n  b: {url: /y}\n")
    with pytest.raises(UserError, match="no default remote"):
        config.resolve(tmp_path, None)
    with pytest.raises(UserError, match="unknown remote 'c'"):
        config.resolve(tmp_path, "c")


@pytest.mark.parametrize(("text", "where"), [
    ("remotes:\n  origin: {uri: /x}\n", "remotes.origin"),
    ("remotes:\n  origin: {url: 's3://'}\n", "hpipe.yaml:2: remotes.origin.url"),
    ("remots: {}\n", "did you mean 'remotes'"),
    ("remotes: [a]\n", "hpipe.yaml:1: remotes"),
])
def test_bad_settings_files_name_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "hpipe.yaml").write_text(text)
    with pytest.raises(UserError) as info:
        config.load_remotes(tmp_path)
    assert where in str(info.value)


@pytest.mark.parametrize(("url", "protocol"), [
    ("/srv/cache", "file"), ("../shared/cache", "file"), ("cache", "file"), ("file:///srv/c", "file"),
    ("s3://bucket/prefix", "s3"), ("gs://b", "gs"), ("memory://x", "memory"),
])
def test_url_protocols(url: str, protocol: str) -> None:
    assert config.check_url(url) == protocol


def test_credentials_are_never_copied_into_the_kept_parses(project: Project) -> None:
    """Reading the remotes after the pipeline (push, pull, repro --pull) keeps no parse of
    hpipe.local.yaml in .hpipe/parsed/ (the project's other YAML files are kept)."""
    from hangar_pipe.pipeline import Pipeline

    _git_project(project)
    project.hpipe("remote", "add", "s3", "s3://team-bucket/hpipe", "--default")
    project.hpipe("remote", "modify", "s3", "secret_access_key", "SEKRET")
    Pipeline.load(project.root)
    remotes, _ = config.load_remotes(project.root)
    assert remotes["s3"].options["secret_access_key"] == "SEKRET"
    kept = list((project.root / ".hpipe" / "parsed").iterdir())
    assert kept and not any(b"SEKRET" in entry.read_bytes() for entry in kept)
