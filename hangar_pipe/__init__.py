"""hangar-pipe: reproducible ML pipelines over versioned Hangar tensor data."""

from hangar_pipe import plugins  # noqa: F401  (registers the Hangar kind and the built-in stages)
from hangar_pipe.core.context import ReproOptions
from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

__all__ = ["Pipeline", "ReproOptions", "UserError", "__version__"]
__version__ = "0.1.0"
