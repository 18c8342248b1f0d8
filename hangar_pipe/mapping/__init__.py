"""The `uses: map` stage's parts: what it last processed (state.py), what to redo (plan.py, pure),
and computing the user's function over samples (compute.py). The stage itself, which reads and
writes Hangar, is hangar_pipe/stages/map.py; status's words for it are explain.py."""
