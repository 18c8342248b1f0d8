"""Status's words for a map stage whose input samples changed: `120 samples changed (100 added,
15 modified, 5 removed) since a=…` (core.decisions.SAMPLES_CHANGED), computed as the stage will
compute it (plan.py), from its state and the input commit this run reads. Any other reason (code,
params, definition, outputs) is left as the core gives it: the stage then computes every sample.
"""

from __future__ import annotations

from typing import Any

from hangar_pipe.core.context import Workspace
from hangar_pipe.core.decisions import SAMPLES_CHANGED, Measured, Reasons
from hangar_pipe.core.spec import Stage
from hangar_pipe.errors import UserError
from hangar_pipe.hangar.kinds import HangarDep, HangarOut
from hangar_pipe.hangar.source import HangarData
from hangar_pipe.mapping import state as map_state
from hangar_pipe.mapping.plan import plan_map
from hangar_pipe.stages import with_columns


def explain(stage: Stage, reasons: Reasons, measured: Measured, ws: Workspace) -> Reasons:
    """The reasons, with changes to the input columns alone said as samples changed."""
    changed = reasons.get("changed deps")
    if set(reasons) != {"changed deps"} or not isinstance(changed, dict) or not isinstance(ws.data, HangarData):
        return reasons
    inputs = with_columns(stage.with_.get("inputs"))
    deps = {d.key: d for d in stage.deps if isinstance(d, HangarDep)}
    if not changed or any(key not in deps or not isinstance(what, dict) or not set(what) <= set(inputs)
                          or not all(isinstance(w, dict) and not {"column", "schema"} & set(w) for w in what.values())
                          for key, what in changed.items()):
        return reasons
    try:
        counted = _samples_changed(stage, measured, ws.data, deps[next(iter(changed))], inputs)
    except UserError:  # the stage says it when it runs
        return reasons
    return {SAMPLES_CHANGED: counted} if counted is not None else reasons


def _samples_changed(stage: Stage, measured: Measured, data: HangarData, dep: HangarDep,
                     inputs: list[str]) -> dict[str, Any] | None:
    loaded = map_state.load(data.root, stage.name)
    record = measured.deps.get(dep.key)
    store = data.store(dep.repo)
    out = next((o for o in stage.outs if isinstance(o, HangarOut)), None)
    head = data.branch_head(out.repo, out.ref) if out is not None else None
    if loaded is None or record is None or store is None or head is None:
        return None
    state, old_runs = loaded
    runs = {c: found[1] for c in inputs if (found := store.column_records(record["commit"], c))}
    outputs = map_state.fingerprints(store, head[1], with_columns(stage.with_.get("outputs")))
    if len(runs) != len(inputs) or state.branch != head[0]:
        return None
    plan = plan_map(state, old_runs, state.config, runs, outputs, force=False)
    return plan.reason if plan.full is None and (plan.process or plan.remove) else None
