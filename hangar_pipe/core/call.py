"""Run a `uses: module:callable` stage in its own process: `python -m hangar_pipe.call TARGET KWARGS_JSON`.

SIGTERM (hpipe stopping the run) raises SystemExit, so the callable's `with` blocks and atexit
hooks run: a Hangar writer discards its staging and releases its lock. Bad input (UserError) is
one line on stderr and exit code 2, with its traceback first under `hpipe --debug` (HPIPE_DEBUG).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback

from hangar_pipe.errors import UserError


def _terminate(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    target, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    module_name, _, attr = target.partition(":")
    func = getattr(importlib.import_module(module_name), attr)
    try:
        result = func(**kwargs)
    except UserError as exc:
        if os.environ.get("HPIPE_DEBUG"):
            traceback.print_exc()
        print(f"hpipe: error: {exc}", file=sys.stderr)
        _tell_torchrun(str(exc))
        return exc.exit_code
    except Exception as exc:
        _tell_torchrun(f"{type(exc).__name__}: {exc}")
        raise
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _tell_torchrun(message: str) -> None:
    """A torchrun worker (training/distributed.py) leaves its error, and when it failed to the
    nanosecond, in the file torchrun names: the agent then reports the rank that failed first,
    not one that failed a moment later because it lost that rank."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with open(path, "w") as fh:
            json.dump({"message": message.splitlines()[0] if message else "", "timestamp": int(time.time()),
                       "failed_ns": time.time_ns()}, fh)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
