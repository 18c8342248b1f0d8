"""hangar-pipe: reproducible ML pipelines over versioned Hangar tensor data."""

from hangar_pipe.errors import UserError
from hangar_pipe.pipeline import Pipeline

__all__ = ["Pipeline", "UserError", "__version__"]
__version__ = "0.1.0"
