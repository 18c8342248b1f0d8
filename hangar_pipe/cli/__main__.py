"""`python -m hangar_pipe.cli`: the same as `hpipe`."""

from hangar_pipe.cli import main

main()
