"""`hpipe exp apply ID`: a point's params written into the project, its outputs restored.

The params files are written as the point read them (whole: later edits to them are undone, as
the point's results are the results of exactly those files); then a `repro` at the point's data commit
finds every stage's result in the run cache (the point recorded it there) and restores the
outputs instead of running anything. Where the cache no longer holds a result (`hpipe gc`), that
stage runs again: the outputs are the point's either way.
"""

from __future__ import annotations

from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.context import ReproOptions
from hangar_pipe.core.layout import PIPELINE_FILE
from hangar_pipe.core.reporter import Reporter
from hangar_pipe.core.runner import RunResult
from hangar_pipe.experiments.records import PointRecord
from hangar_pipe.pipeline import Pipeline


def apply(pipeline: Pipeline, record: PointRecord, reporter: Reporter) -> tuple[RunResult, str | None]:
    """Write the point's params files and bring its outputs back; (the repro's result, the data
    commit it was pinned to when that is not the data head now, else None)."""
    for file, text in record.files.items():
        atomic_write(pipeline.root / file, text.encode())
    pipeline = Pipeline.load(pipeline.root / PIPELINE_FILE)  # (its ${...} may read those files)
    pinned = record.data_commit if record.data_commit and record.data_commit != pipeline.data_commit_of() else None
    options = ReproOptions(data_commit=pinned, tags={"applied": f"{record.experiment}/{record.id}"})
    return pipeline.repro(record.targets or None, options, reporter), pinned

