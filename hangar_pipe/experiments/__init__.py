"""Experiments: `hpipe exp run` sweeps params and data commits, each point in its own workspace
(plan.py: the points; workspace.py: their copies of the project; runner.py: running them;
records.py: what each left; show.py: the table; apply.py: a point brought back)."""
