"""Where hpipe keeps things in a project: the files beside pipeline.yaml and everything under `.hpipe/`."""

from __future__ import annotations

import re
from pathlib import Path

PIPELINE_FILE = "pipeline.yaml"
PARAMS_FILE = "params.yaml"  # the default params file, beside pipeline.yaml
LOCK_FILE = "pipeline.lock"  # what each stage ran with; committed with pipeline.yaml
STATE_DIR = ".hpipe"  # local state, never committed
CONFIG_FILE = "hpipe.yaml"  # project settings (the named remotes); committed
LOCAL_CONFIG_FILE = "hpipe.local.yaml"  # this machine's overrides and credentials; git-ignored


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def stat_cache_db(root: Path) -> Path:
    """(inode, mtime, size) -> content hash of every file hashed."""
    return root / STATE_DIR / "state.db"


def repro_mutex(root: Path) -> Path:
    """Held (flock) by the one `hpipe repro` running; holds its pid."""
    return root / STATE_DIR / "repro.lock"


def running_dir(root: Path) -> Path:
    """One file per stage process group running now, so a killed run's orphans can be stopped
    (core/orphans.py)."""
    return root / STATE_DIR / "running"


def cache_dir(root: Path) -> Path:
    """The output cache (`objects/`) and the run cache database."""
    return root / STATE_DIR / "cache"


def run_cache_db(root: Path) -> Path:
    """Run key -> the lock entry a stage's run produced."""
    return cache_dir(root) / "run-cache.db"


def history_db(root: Path) -> Path:
    """One record per `hpipe repro`: what ran, on which data, with which params and metrics."""
    return root / STATE_DIR / "runs.db"


def columns_cache(root: Path) -> Path:
    """Hangar columns read in bulk, as .npy files keyed by column fingerprint; bounded, LRU
    (hangar/column_cache.py)."""
    return root / STATE_DIR / "columns"


def hangar_fingerprints(root: Path) -> Path:
    """Hangar column fingerprints by (commit, column): a commit never changes
    (hangar/fingerprints.py)."""
    return root / STATE_DIR / "hangar-fingerprints.json"


def parsed_yaml(root: Path) -> Path:
    """The last parse of each YAML file read, keyed by its bytes (core/parsed.py): a no-op
    neither imports nor runs PyYAML."""
    return root / STATE_DIR / "parsed"


def experiments(root: Path) -> Path:
    """One folder per experiment (`hpipe exp run`): its points' records, logs and workspaces."""
    return root / STATE_DIR / "exps"


def map_states(root: Path) -> Path:
    """One folder per `uses: map` stage: what it last processed, per sample (mapping/state.py)."""
    return root / STATE_DIR / "map"


def stage_states(root: Path) -> Path:
    """One folder per stage that keeps resumable state (core/stage_state.py)."""
    return root / STATE_DIR / "state"


def stage_state(root: Path, stage: str, run_key: str) -> Path:
    """Where a stage's run with this run key keeps what lets a killed run go on
    (`HPIPE_STATE_DIR`)."""
    return stage_states(root) / path_safe(stage) / run_key


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def path_safe(name: str) -> str:
    """A stage name as one folder name: kept when it is made of letters, digits, `_`, `.`, `-` (and
    does not start with a dot), else those characters with `_` for the others and a hash of the
    name after them, so that two names never share a folder."""
    safe = _UNSAFE.sub("_", name)[:80]
    if safe == name and not name.startswith(".") and name:
        return name
    import hashlib

    return f"{safe.lstrip('.')}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
