"""The cache remote: `hpipe push`/`hpipe pull` vs `dvc push`/`dvc pull` to a local-folder remote.

Twin projects (benchmarks/.work/remote-*/{hpipe,dvc}) with one stage, `gen`, whose code (gen.py,
seeded) writes its output; each tool runs it once (`hpipe repro` / `dvc repro`, set-up, not
timed), so each has its own local cache filled before anything is timed. Then, for each
repetition, the tools take turns (hpipe, dvc, hpipe, dvc, ...), every timed command preceded by an
untimed `sync` so one command's dirty pages are not written back during the next (and followed by
a timed one: the big-object table also shows each time until the bytes are on the disk).

Nothing is deleted while timing (each round gets new remote and clone folders; an earlier run's
folders are moved aside and deleted at the end), and the timing starts `--settle` seconds (70)
after set-up: on this VM's disk, creating files right after many were deleted is 10x slower
(see `settle`).

1. Many small objects: a folder output of N files of 512-1536 bytes (10,000 by default), also
   against `cp -r` of the folder on the same disk.
   - push to an empty remote (a new folder each repetition; `hpipe remote add origin DIR
     --default --force` / `dvc remote add -d -f origin DIR`);
   - push again with nothing new (case 2 of the issue);
   - pull into a fresh clone: a new folder holding only what git would carry (hpipe:
     pipeline.yaml, pipeline.lock, hpipe.yaml, gen.py; DVC: dvc.yaml, dvc.lock, gen.py,
     .dvcignore, .dvc/config), no cache and no outputs. The pull fetches into the clone's cache
     and puts the output back in the workspace; its bytes are then checked against the original
     (untimed).
2. One big object: a single file output (1 GiB by default), pushed and pulled the same way, in
   MB/s (1 MB = 10^6 bytes), against `cp --reflink=never` of the file to the same disk, timed in
   the same rounds: the physical floor.

Each tool runs with its default parallelism (printed) unless `--jobs N` passes `-j N` to both.
Times are wall times of the whole process. Target (issue 11): hpipe <= 0.3x DVC for the small
objects; a push with nothing new well under a second.

Run from the repo root:  .venv/bin/python benchmarks/bench_remote.py [--quick] [--reps 3] [--files N]
    [--big-mib M] [--big-reps 3] [--jobs N] [--settle 70] [--no-dvc] [--skip-small] [--skip-big] [--keep]
(`--quick`: 1,000 files and 50 MiB.)
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash
from _common import (
    ENV,
    HPIPE,
    SITE_CACHE,
    WORK,
    Cmd,
    Timing,
    dvc_version,
    ensure_dvc,
    init_dvc,
    loadavg,
    machine,
    ratio,
    run,
    summary,
    table,
    timed,
    write_project,
)

PY = shlex.quote(sys.executable)
GEN = """\
import os, random, sys

rng = random.Random(0)
if sys.argv[1] == "files":  # files N OUT: N files of 512-1536 random bytes in folder OUT
    n, out = int(sys.argv[2]), sys.argv[3]
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        with open(os.path.join(out, f"{i:05d}.bin"), "wb") as fh:
            fh.write(rng.randbytes(rng.randint(512, 1536)))
else:  # big MIB OUT: one file of MIB MiB of random bytes
    mib, out = int(sys.argv[2]), sys.argv[3]
    with open(out, "wb") as fh:
        for _ in range(mib):
            fh.write(rng.randbytes(1 << 20))
"""
TRASH = WORK / "remote-trash"
# what git would carry to a fresh clone (the rest: caches, outputs, .dvc/tmp, stay behind)
CLONE_FILES = {"hpipe": ["pipeline.yaml", "pipeline.lock", "hpipe.yaml", "gen.py"],
               "dvc": ["dvc.yaml", "dvc.lock", "gen.py", ".dvcignore", ".dvc/config"]}


@dataclass
class Tool:
    """One tool's commands on its project folder."""

    name: str
    project: Path
    exe: Path
    jobs: list[str]  # ["-j", "N"] or []

    @property
    def hpipe(self) -> bool:
        return self.name == "hpipe"

    def set_remote(self, folder: Path) -> None:
        """Point the default remote `origin` at a new, empty folder."""
        if self.hpipe:
            run([self.exe, "remote", "add", "origin", folder, "--default", "--force"], self.project)
        else:
            run([self.exe, "remote", "add", "-d", "-f", "origin", folder], self.project)

    def push(self) -> Cmd:
        return [self.exe, "push", *self.jobs]

    def pull(self) -> Cmd:
        return [self.exe, "pull", *self.jobs]

    def clone(self, folder: Path) -> Path:
        """A fresh clone: the files git carries, no cache, no outputs."""
        for rel in CLONE_FILES[self.name]:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.project / rel, folder / rel)
        return folder


@dataclass
class Samples:
    """Timings by (operation, contestant), in the order they ran."""

    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    outputs: dict[tuple[str, str], str] = field(default_factory=dict)  # the first run's output

    def add(self, op: str, who: str, seconds: float, out: str) -> None:
        self.times.setdefault((op, who), []).append(seconds)
        self.outputs.setdefault((op, who), " / ".join(line.strip() for line in out.strip().splitlines()[-2:]))

    def get(self, op: str, who: str) -> Timing | None:
        xs = self.times.get((op, who))
        return Timing(xs) if xs else None


def step(s: Samples, op: str, who: str, cmd: Cmd, cwd: Path, expect: str | None) -> None:
    """`sync` (untimed), then one timed run of the command, then a timed `sync`: recorded as `op`
    (the command) and `op+sync` (until what it wrote is on the disk)."""
    subprocess.run(["sync"], check=True)
    sec, text = timed(cmd, cwd, expect)
    t0 = time.perf_counter()
    subprocess.run(["sync"], check=True)
    s.add(op, who, sec, text)
    s.add(op + "+sync", who, sec + time.perf_counter() - t0, text)


def digest(path: Path) -> str:
    """xxh3-128 over a file, or over a folder's sorted relative paths and contents."""
    h = xxhash.xxh3_128()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path)).encode() if path.is_dir() else b"")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def setup(name: str, cmd: str, out: str, with_dvc: bool) -> tuple[list[Tool], dict[str, float]]:
    """Twin projects with the stage `gen`, run once by each tool (their caches filled): the tools
    and the set-up seconds."""
    dvc = ensure_dvc() if with_dvc else None
    stages: dict[str, dict[str, object]] = {"gen": {"cmd": cmd, "deps": ["gen.py"], "outs": [out]}}
    base = WORK / name
    aside(base)
    aside(SITE_CACHE)  # DVC's hash cache: both tools start cold
    write_project(base / "hpipe", stages, {"gen.py": GEN}, "pipeline.yaml")
    tools = [Tool("hpipe", base / "hpipe", HPIPE, [])]
    setup_s = {"hpipe repro": timed([HPIPE, "repro"], base / "hpipe", "1 ran")[0]}
    if dvc is not None:
        write_project(base / "dvc", stages, {"gen.py": GEN}, "dvc.yaml")
        init_dvc(dvc, base / "dvc")
        tools.append(Tool("dvc", base / "dvc", dvc, []))
        setup_s["dvc repro"] = timed([dvc, "repro"], base / "dvc", "Running stage 'gen'")[0]
    return tools, setup_s


def aside(path: Path) -> None:
    """Move an earlier run's folder into TRASH, deleted only after the measurements (see `settle`)."""
    if path.exists():
        TRASH.mkdir(parents=True, exist_ok=True)
        path.rename(TRASH / f"{path.name}-{time.time_ns()}")


def settle(seconds: float) -> None:
    """`sync`, then wait: ext4 without a journal (this VM's disk) skips inodes freed in the last
    60 s when it creates a file, scanning the inode table for others; right after 10,000 files were
    deleted, creating 10,000 takes 10x longer (`cp -r`: 0.4 s vs 5-7 s, all of it kernel time in
    `recently_deleted`). So nothing is deleted while timing, and the timing waits for earlier
    deletions (by set-up, or by an earlier run) to age out."""
    subprocess.run(["sync"], check=True)
    if seconds > 0:
        print(f"(waiting {seconds:.0f} s for earlier deletions to age out)", file=sys.stderr)
        time.sleep(seconds)


def rounds(tools: list[Tool], out: str, reps: int, expect: Callable[[str, str], str],
           floor: Path | None = None, noop: bool = True) -> Samples:
    """`reps` rounds of push (to a new remote), push again (if `noop`) and pull (into a new
    clone), the tools taking turns at each step; with `floor`, a `cp -r` of that file or folder
    after the pushes."""
    s = Samples()
    want = {t.name: digest(t.project / out) for t in tools}
    base = tools[0].project.parent
    for rep in range(reps):
        for t in tools:
            t.set_remote(base / f"remote-{t.name}-{rep}")
            step(s, "push", t.name, t.push(), t.project, expect("push", t.name))
        if floor is not None:  # the same bytes copied once on this disk
            target = base / f"cp-{rep}"
            step(s, "cp", "cp", ["cp", "-r", "--reflink=never", floor, target], base, None)
        for t in tools if noop else []:
            step(s, "noop", t.name, t.push(), t.project, expect("noop", t.name))
        clones = {t.name: t.clone(base / f"clone-{t.name}-{rep}") for t in tools}
        for t in tools:
            step(s, "pull", t.name, t.pull(), clones[t.name], expect("pull", t.name))
        for t in tools:  # untimed: the pulled output is the original, byte for byte
            got = digest(clones[t.name] / out)
            if got != want[t.name]:
                raise SystemExit(f"{t.name} pull: {out} in {clones[t.name]} differs from the original")
    return s


def default_jobs(tools: list[Tool]) -> str:
    """Each tool's parallelism for a local-folder remote, as used."""
    parts = []
    for t in tools:
        if t.jobs:
            parts.append(f"{t.name} -j {t.jobs[1]}")
        elif t.hpipe:
            from hangar_pipe.remote.transfer import default_jobs as hp_jobs

            parts.append(f"hpipe default -j {hp_jobs(parallel=False)} (to a folder on a local disk)")
        else:
            py = t.exe.parent / "python"
            n = run([py, "-c", "from dvc_objects.fs.local import LocalFileSystem as L; print(L().jobs)"],
                    WORK).strip()
            parts.append(f"dvc default -j {n} (4 per core)")
    return "; ".join(parts)


def cell(t: Timing | None) -> object:
    return t.median if t else "-"


def runs(t: Timing | None) -> str:
    return ", ".join(f"{x:.2f}" for x in t.samples) if t else "-"


def small_case(args: argparse.Namespace) -> None:
    n = args.files
    tools, setup_s = setup("remote-small", f"{PY} gen.py files {n} data", "data", not args.no_dvc)
    for t in tools:
        t.jobs = ["-j", str(args.jobs)] if args.jobs else []
    objects = n + 1  # the files and the folder's manifest (.dir) in both tools

    def expect(op: str, tool: str) -> str:
        return {("push", "hpipe"): f"pushed {objects:,} objects", ("push", "dvc"): f"{objects} files pushed",
                ("noop", "hpipe"): "everything is already in", ("noop", "dvc"): "Everything is up to date",
                ("pull", "hpipe"): "restored data", ("pull", "dvc"): f"{n} files added"}[(op, tool)]

    print(f"### Many small objects: {n:,} files of 512-1536 bytes in one folder output"
          f" ({objects:,} objects with the manifest)\n")
    print(f"Set-up (not timed below): {', '.join(f'{k} {v:.1f} s' for k, v in setup_s.items())}."
          f" Parallelism: {default_jobs(tools)}.\n")
    settle(args.settle)
    before = loadavg()
    s = rounds(tools, "data", args.reps, expect, floor=tools[0].project / "data")
    print(f"{args.reps} rounds, the tools taking turns; load average {before} before, {loadavg()} after.\n")
    cp = s.get("cp", "cp")
    assert cp is not None
    rows: list[list[object]] = []
    sums: dict[str, float] = {}
    for op, what in (("push", f"push {objects:,} objects to an empty remote"), ("noop", "push, nothing new"),
                     ("pull", "pull into a fresh clone (fetch + checkout)")):
        h, d = s.get(op, "hpipe"), s.get(op, "dvc")
        rows.append([what, cell(h), cell(d), ratio(h.median, d.median) if h and d else "-",
                     ratio(h.median, cp.median) if h else "-", ratio(d.median, cp.median) if d else "-",
                     runs(h), runs(d)])
        if op != "noop":
            for who, tm in (("hpipe", h), ("dvc", d)):
                if tm:
                    sums[who] = sums.get(who, 0.0) + tm.median
    if "dvc" in sums:
        rows.append(["push + pull", sums["hpipe"], sums["dvc"], ratio(sums["hpipe"], sums["dvc"]), "", "", "", ""])
    print(table(["operation", "hpipe median s", "dvc median s", "hpipe/dvc", "hpipe / cp -r", "dvc / cp -r",
                 "hpipe runs s", "dvc runs s"], rows))
    print(f"\nThe floor, `cp -r --reflink=never` of the folder on the same disk ({n:,} files written once):"
          f" median {cp.median:.3f} s (runs {runs(cp)}).")
    print("\nWhat each tool said (first round):\n")
    for (op, who), text in s.outputs.items():
        if who != "cp" and not op.endswith("+sync"):
            print(f"- {who} {op}: `{text}`")
    if "dvc" in sums:
        worst = max(s.get(op, "hpipe").median / s.get(op, "dvc").median for op in ("push", "pull"))  # type: ignore[union-attr]
        print(f"\nTarget hpipe <= 0.3x DVC (push and pull, medians): {'met' if worst <= 0.3 else 'MISSED'}"
              f" (worst ratio {worst:.2f}x)")
        summary("cache remote: push/pull 10k files vs DVC (worst)", f"{worst:.2f}x", "<= 0.3x", worst <= 0.3)
    noop = s.get("noop", "hpipe")
    if noop:
        verdict = "well under" if noop.median < 0.5 else "NOT well under"
        print(f"Nothing new: hpipe median {noop.median:.3f} s ({verdict} a second)")
        summary("cache remote: push with nothing new", f"{noop.median:.2f} s", "well under 1 s", noop.median < 0.5)
    print()


def big_case(args: argparse.Namespace) -> None:
    mib = args.big_mib
    size = mib << 20
    tools, setup_s = setup("remote-big", f"{PY} gen.py big {mib} big.bin", "big.bin", not args.no_dvc)
    for t in tools:
        t.jobs = ["-j", str(args.jobs)] if args.jobs else []

    def expect(op: str, tool: str) -> str:
        return {("push", "hpipe"): "pushed 1 object", ("push", "dvc"): "1 file pushed",
                ("pull", "hpipe"): "restored big.bin", ("pull", "dvc"): "1 file added"}[(op, tool)]

    print(f"### One big object: a {mib:,} MiB file output ({size / 1e6:,.0f} MB)\n")
    print(f"Set-up (not timed below): {', '.join(f'{k} {v:.1f} s' for k, v in setup_s.items())}."
          f" Parallelism: {default_jobs(tools)}.\n")
    settle(args.settle)
    before = loadavg()
    s = rounds(tools, "big.bin", args.big_reps, expect, floor=tools[0].project / "big.bin", noop=False)
    print(f"{args.big_reps} rounds, the tools taking turns; load average {before} before, {loadavg()} after.\n")
    rows: list[list[object]] = []
    for op, who, what in (("cp", "cp", "cp --reflink=never of the file (the floor)"),
                          ("push", "hpipe", "hpipe push"), ("push", "dvc", "dvc push"),
                          ("pull", "hpipe", "hpipe pull"), ("pull", "dvc", "dvc pull")):
        row: list[object] = [what]
        for kind in (op, op + "+sync"):
            tm, floor, dvc = s.get(kind, who), s.get(kind.replace(op, "cp"), "cp"), s.get(kind, "dvc")
            if tm is None or floor is None:
                break
            row += [tm.median, f"{size / 1e6 / tm.median:,.0f}", ratio(tm.median, floor.median),
                    ratio(tm.median, dvc.median) if dvc and who == "hpipe" else "-"]
        if len(row) > 1:
            rows.append(row + [runs(s.get(op, who)), runs(s.get(op + "+sync", who))])
    print(table(["operation", "median s", "MB/s", "/ cp", "hpipe/dvc", "with sync: median s", "MB/s", "/ cp",
                 "hpipe/dvc", "runs s", "runs with sync s"], rows))
    print("\n\"with sync\": the command, then `sync` until what it wrote is on the disk (each command"
          " starts after a `sync` either way).\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 files and 50 MiB, to try it out")
    ap.add_argument("--files", type=int, help="small files in the folder output (default 10,000)")
    ap.add_argument("--big-mib", type=int, help="size of the big output in MiB (default 1024)")
    ap.add_argument("--reps", type=int, default=3, help="rounds of the small-objects case")
    ap.add_argument("--big-reps", type=int, default=3, help="rounds of the big-object case")
    ap.add_argument("--jobs", type=int, help="pass -j N to both tools (default: each tool's own)")
    ap.add_argument("--no-dvc", action="store_true", help="time hpipe only")
    ap.add_argument("--settle", type=float, default=70,
                    help="seconds to wait after set-up before timing (see `settle`; 0 to skip)")
    ap.add_argument("--keep", action="store_true", help="keep the projects, remotes and clones in .work")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    args.files = args.files or (1000 if args.quick else 10_000)
    args.big_mib = args.big_mib or (50 if args.quick else 1024)
    WORK.mkdir(parents=True, exist_ok=True)
    import hangar_pipe

    src = Path(hangar_pipe.__file__).parent.parent
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    where = machine() + f"; hangar_pipe from {src} (commit {commit or '?'})"
    if not args.no_dvc:
        where += f"; dvc {dvc_version(ensure_dvc())}"
    print(f"## Cache remote: push and pull\n\nMachine: {where}\n")
    print(f"Command: {' '.join(shlex.quote(a) for a in sys.argv)}"
          f" (PYTHONPATH={os.environ.get('PYTHONPATH', '')})\n")
    t0 = time.perf_counter()
    if not args.skip_small:
        small_case(args)
    if not args.skip_big:
        big_case(args)
    print(f"Load average at end: {loadavg()}; {time.perf_counter() - t0:.0f} s in all (with the waits)."
          f" Environment: DVC_NO_ANALYTICS={ENV.get('DVC_NO_ANALYTICS')}")
    if not args.keep:  # only now: deleting while timing would slow the file creation being timed
        for name in ("remote-small", "remote-big"):
            aside(WORK / name)
    shutil.rmtree(TRASH, ignore_errors=True)


if __name__ == "__main__":
    main()
