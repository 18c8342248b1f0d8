"""What a map stage last processed: `.hpipe/map/<stage>/state.json`, and its provenance.

The state names the config the outputs were computed with (a digest of everything but the input
samples that determines them), the input commit with each input column's fingerprint, and the
output commit with each output column's fingerprint. The provenance is, per input column, that
commit's records: each sample's key and data digest, i.e. which input samples produced each
output sample. The next run diffs it against the records of the new commit.

Both are written after the commit, each atomically, the provenance first (its name is its hash);
a pending state is written just before it. A state whose outputs are not the ones at the branch
head now is not used (the next run recomputes every sample), unless the pending one names that
head's parent as its input commit: then the stage was killed between its commit and its record.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.layout import map_states, path_safe

if TYPE_CHECKING:
    from hangar_pipe.hangar.store import HangarStore

VERSION = 1


@dataclass(frozen=True)
class MapState:
    """A map stage's last good run: its config, what it read and what it committed."""

    config: str
    branch: str
    input_commit: str
    inputs: dict[str, str]  # column -> fingerprint at input_commit
    output_commit: str
    outputs: dict[str, str]  # column -> fingerprint at output_commit
    provenance: str  # the provenance file's name


def folder(root: Path, stage: str) -> Path:
    return map_states(root) / path_safe(stage)


def load(root: Path, stage: str, *, pending: bool = False) -> tuple[MapState, dict[str, bytes]] | None:
    """The state and its provenance (input column -> records), or None when either is missing
    or unreadable (then every sample is computed again). `pending`: the run that was about to
    commit (see `save`)."""
    base = folder(root, stage)
    try:
        raw = json.loads((base / ("pending.json" if pending else "state.json")).read_text())
        if raw.pop("version", None) != VERSION:
            return None
        state = MapState(**raw)
        return state, read_provenance(base / state.provenance)
    except (OSError, ValueError, TypeError, zlib.error):
        return None


def read_provenance(path: Path) -> dict[str, bytes]:
    data = zlib.decompress(path.read_bytes())
    header, _, body = data.partition(b"\n")
    runs: dict[str, bytes] = {}
    at = 0
    for column, size in json.loads(header):
        runs[column] = body[at:at + size]
        at += size
    if at != len(body):
        raise ValueError("provenance: sizes do not add up")
    return runs


def save(root: Path, stage: str, state: MapState, runs: dict[str, bytes], *, pending: bool = False) -> MapState:
    """Write the provenance, then the state naming it; drop the provenance it replaces.

    `pending`: written just before the commit, without outputs. A stage killed between its
    commit and its record leaves it; the next run adopts it when the branch head is that commit
    (stages/map.py), instead of computing every sample again."""
    base = folder(root, stage)
    base.mkdir(parents=True, exist_ok=True)
    header = json.dumps([[c, len(run)] for c, run in runs.items()]).encode()
    data = zlib.compress(header + b"\n" + b"".join(runs.values()), 1)
    name = f"provenance-{xxhash.xxh3_64_hexdigest(data)}.z"
    if not (base / name).is_file():  # (named by its hash: the pending state's is the same file)
        atomic_write(base / name, data)
    state = MapState(**{**asdict(state), "provenance": name})
    body = json.dumps({"version": VERSION, **asdict(state)}, indent=1).encode()
    atomic_write(base / ("pending.json" if pending else "state.json"), body)
    if pending:
        return state
    (base / "pending.json").unlink(missing_ok=True)
    for old in base.glob("provenance-*.z"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return state


def fingerprints(store: HangarStore, commit: str, columns: list[str]) -> dict[str, str]:
    """The fingerprint of each of these columns at the commit (those there), as a state records them."""
    return {c: s.fingerprint for c in columns if (s := store.column(commit, c)) is not None}


def config_digest(material: dict[str, Any], inputs: list[str], schemas: dict[str, Any]) -> str:
    """What determines the outputs besides the input samples: the stage's definition (but
    `workers`), its code, params and other deps (HPIPE_STAGE_INPUTS, without the input columns'
    fingerprints), and the input columns' schemas."""
    definition = dict(material.get("definition") or {})
    definition["with"] = {k: v for k, v in (definition.get("with") or {}).items() if k != "workers"}
    deps = {}
    for key, identity in (material.get("deps") or {}).items():
        if key.startswith("hangar:") and isinstance(identity, dict):
            identity = {c: fp for c, fp in identity.items() if c not in inputs}
        deps[key] = identity
    kept = {"definition": definition, "deps": deps, "params": material.get("params"), "schemas": schemas}
    return xxhash.xxh3_128_hexdigest(json.dumps(kept, sort_keys=True, default=str).encode())


def collect(root: Path, stages: list[str], dry_run: bool) -> tuple[int, int]:
    """For `hpipe gc`: remove the records of map stages that are no longer in the pipeline; how
    many folders, and their bytes."""
    import shutil

    keep = {path_safe(name) for name in stages}
    base = map_states(root)
    gone = [p for p in sorted(base.iterdir()) if p.name not in keep] if base.is_dir() and not base.is_symlink() else []
    size = sum(f.stat().st_size for p in gone for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    if not dry_run:
        for path in gone:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    return len(gone), size
