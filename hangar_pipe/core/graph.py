"""The stage graph: edges from outputs to the deps they feed, checks, selection and drawing."""

from __future__ import annotations

import bisect
import graphlib
import posixpath
from dataclasses import dataclass, field
from typing import Protocol

from hangar_pipe.core.spec import PipelineSpec, Stage
from hangar_pipe.errors import UserError, did_you_mean


class Linked(Protocol):
    """What the graph reads of a dep or out (kinds and params)."""

    @property
    def edges(self) -> tuple[str, ...]: ...

    @property
    def path_edges(self) -> tuple[str, ...]: ...


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class Graph:
    """The stages' dependency graph: who reads whose output (`upstream`), who writes each output."""

    spec: PipelineSpec
    upstream: dict[str, set[str]] = field(default_factory=dict)
    producers: dict[str, str] = field(default_factory=dict)  # output key -> stage
    _path_outs: list[str] = field(default_factory=list)  # sorted path outputs
    _branches: set[str] = field(default_factory=set)  # DataTarget.edge of branches writers name

    @property
    def stages(self) -> dict[str, Stage]:
        return self.spec.stages

    @classmethod
    def build(cls, spec: PipelineSpec) -> Graph:
        g = cls(spec)
        for name, stage in spec.stages.items():
            for out in stage.outs:
                for edge in out.edges:
                    if edge in g.producers:
                        other = g.producers[edge]
                        raise UserError(f"stages '{other}' and '{name}' both declare output '{edge}'",
                                        file=spec.file, line=stage.line, key=f"stages.{name}.outs")
                    g.producers[edge] = name
        g._branches = {w.edge for s in spec.stages.values() for o in s.outs
                       if (w := o.writes) is not None and w.ref is not None}
        g._path_outs = sorted(p for s in spec.stages.values() for o in s.outs for p in o.path_edges)
        for path in g._path_outs:
            for parent in _ancestors(path):
                if parent in g.producers:
                    inner, outer = g.producers[path], g.producers[parent]
                    raise UserError(f"output '{path}' of stage '{inner}' is inside output '{parent}'"
                                    f" of stage '{outer}'", file=spec.file,
                                    line=spec.stages[inner].line, key=f"stages.{inner}.outs")
        for name, stage in spec.stages.items():
            g.upstream[name] = {p for dep in stage.all_deps() for p in g.producers_of(dep)}
        try:
            graphlib.TopologicalSorter(g.upstream).prepare()
        except graphlib.CycleError as exc:
            cycle = list(exc.args[1])
            raise UserError(f"pipeline has a cycle: {' -> '.join(cycle)}", file=spec.file,
                            line=spec.stages[cycle[0]].line, key=f"stages.{cycle[0]}") from None
        return g

    def producers_of(self, dep: Linked) -> set[str]:
        """Stages whose outputs feed this dep: the same edge, a folder holding it, or outputs inside it."""
        found = {self.producers[e] for e in dep.edges if e in self.producers}
        for path in dep.path_edges:
            found |= self.producers_of_path(path)
        return found

    def produces(self, edge: str) -> bool:
        """Whether some stage writes this edge (for a path: it, a folder holding it, or inside it;
        for a data branch: a writer names it)."""
        return edge in self._branches or bool(self.producers_of_path(edge))

    def producers_of_path(self, path: str) -> set[str]:
        """Stages that write this project path, a folder holding it, or something inside it."""
        found = {self.producers[a] for a in (*_ancestors(path), path) if a in self.producers}
        prefix = path + "/"
        i = bisect.bisect_left(self._path_outs, prefix)
        while i < len(self._path_outs) and self._path_outs[i].startswith(prefix):
            found.add(self.producers[self._path_outs[i]])
            i += 1
        return found

    def downstream(self) -> dict[str, set[str]]:
        down: dict[str, set[str]] = {name: set() for name in self.stages}
        for name, ups in self.upstream.items():
            for up in ups:
                down[up].add(name)
        return down

    def named(self, name: str) -> list[str]:
        """The stages a name stands for: the stage itself, or every stage a foreach/matrix
        template of that name generated (`train` -> `train@...`); none if neither."""
        if name in self.stages:
            return [name]
        return [n for n in self.stages if n.startswith(f"{name}@")]

    def stages_for(self, targets: list[str]) -> list[str]:
        """Stage names for targets: a stage's name, or a project path that stages write (one of
        their outputs, a folder holding one, or a path inside one)."""
        names: list[str] = []
        for t in targets:
            if named := self.named(t):
                names += named
            elif writers := self.producers_of_path(posixpath.normpath(t)):
                names += sorted(writers)
            else:
                raise UserError(f"unknown stage '{t}'{did_you_mean(t, self.stages)}, nor an output of one;"
                                f" stages: {', '.join(self.stages)}")
        return names

    def select(self, targets: list[str] | None = None, *, single: bool = False,
               downstream: bool = False) -> list[str]:
        """Stages to consider, in a topological order: the targets plus upstream (or downstream)."""
        if not targets:
            chosen = set(self.stages)
        else:
            targets = self.stages_for(targets)
            chosen = set(targets)
            if not single:
                edges = self.downstream() if downstream else self.upstream
                todo = list(targets)
                while todo:
                    for nxt in edges[todo.pop()]:
                        if nxt not in chosen:
                            chosen.add(nxt)
                            todo.append(nxt)
        return [n for n in self.order() if n in chosen]

    def order(self) -> list[str]:
        """All stages in topological order, ties broken by their order in pipeline.yaml."""
        position = {name: i for i, name in enumerate(self.stages)}
        ts = graphlib.TopologicalSorter(self.upstream)
        ts.prepare()
        out: list[str] = []
        while ts.is_active():
            ready = sorted(ts.get_ready(), key=position.__getitem__)
            out.extend(ready)
            ts.done(*ready)
        return out

    # -- drawing -----------------------------------------------------------------------------

    def ascii(self) -> str:
        """An indented tree from each root; a stage reached twice is drawn once, then referenced."""
        down = self.downstream()
        position = {name: i for i, name in enumerate(self.order())}
        lines: list[str] = []
        drawn: set[str] = set()

        def walk(name: str, prefix: str, connector: str, child_prefix: str) -> None:
            seen = name in drawn
            lines.append(f"{prefix}{connector}{name}" + (" (see above)" if seen else ""))
            if seen:
                return
            drawn.add(name)
            children = sorted(down[name], key=position.__getitem__)
            for i, child in enumerate(children):
                last = i == len(children) - 1
                walk(child, child_prefix, "└── " if last else "├── ",
                     child_prefix + ("    " if last else "│   "))

        for root in (n for n in self.order() if not self.upstream[n]):
            walk(root, "", "", "")
        return "\n".join(lines)

    def mermaid(self) -> str:
        lines = ["flowchart TD"]
        ids = {name: f"s{i}" for i, name in enumerate(self.order())}
        lines += [f'    {ids[n]}["{n}"]' for n in ids]
        lines += [f"    {ids[u]} --> {ids[n]}" for n in ids for u in sorted(self.upstream[n], key=ids.__getitem__)]
        return "\n".join(lines)

    def dot(self) -> str:
        lines = ["digraph pipeline {", "    rankdir=TB;", "    node [shape=box];"]
        order = self.order()
        lines += [f'    "{n}";' for n in order]
        lines += [f'    "{u}" -> "{n}";' for n in order for u in sorted(self.upstream[n])]
        lines.append("}")
        return "\n".join(lines)
