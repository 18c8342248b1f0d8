"""Built-in stages, used as `uses: NAME` in pipeline.yaml. Each is a `run(**with_)` callable that
hpipe runs in its own process (`hangar_pipe.core.call`); a new one is a module here plus a line below."""

#: `uses: NAME` -> "module:callable" (registered with the core in hangar_pipe.plugins)
BUILTIN: dict[str, str] = {
    "ingest": "hangar_pipe.stages.ingest:run",  # files or the MNIST subset -> Hangar columns, committed
    "train": "hangar_pipe.stages.train:run",  # a PyTorch model on Hangar columns -> checkpoint, metrics
    "evaluate": "hangar_pipe.stages.evaluate:run",  # a checkpoint on Hangar columns -> metrics
}
