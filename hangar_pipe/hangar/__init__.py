"""Hangar: its repositories as versioned data for the core (a dependency kind and the data source),
writing to them safely, and every workaround hangar 0.5.2 needs (`compat`)."""

from pathlib import Path


def is_repository(folder: Path) -> bool:
    """Whether a folder holds a Hangar repository (its ref database), without importing anything."""
    return (folder / ".hangar" / "ref.lmdb").is_file()
