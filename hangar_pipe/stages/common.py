"""Small helpers the built-in stages share: output files and a terminal progress bar."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from hangar_pipe.core.atomic import atomic_write


def write_output(path: str | Path, data: bytes) -> None:
    """Write a stage output whole or not at all, creating its folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int, str | None], None]]:
    """A rich progress bar on a terminal (nothing otherwise); yields advance(n, description)."""
    if not sys.stderr.isatty():
        def ignore(n: int, description: str | None = None) -> None:
            pass

        yield ignore
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int, description: str | None = None) -> None:
            if description:
                bar.update(task, advance=n, description=description)
            else:
                bar.update(task, advance=n)

        yield advance
