"""Run a `uses: module:callable` stage in its own process: `python -m hangar_pipe.call TARGET KWARGS_JSON`."""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    target, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    module_name, _, attr = target.partition(":")
    func = getattr(importlib.import_module(module_name), attr)
    result = func(**kwargs)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
