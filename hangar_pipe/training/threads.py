"""The CPU threads a built-in torch stage runs with: the run's choice (HPIPE_THREADS, see
core.threads), set in torch. Outside hpipe, torch's own default stays."""

from __future__ import annotations

import os

from hangar_pipe.core.threads import ENV, cores


def budget() -> int:
    """The threads this stage may use: the run's choice, else the cores."""
    given = os.environ.get(ENV, "")
    return int(given) if given.isdigit() and int(given) > 0 else cores()


def use_threads() -> int:
    """Set torch's thread count to the run's choice (when there is one); the count in use."""
    import torch

    if os.environ.get(ENV, "").isdigit():
        torch.set_num_threads(budget())
    return torch.get_num_threads()
