"""Remotes: where a project's results and data go to be shared between machines.

`config.py` reads and edits the named remotes (`hpipe.yaml`, `hpipe.local.yaml`); `storage.py` is
the fsspec seam for the cache remote; `transfer.py` moves objects and run-cache entries. The
Hangar data remote is `hangar_pipe/hangar/remote.py`.
"""
