"""The per-sample `map` stage (issue 15): incremental runs against a full recompute, a plain loop,
and DVC over a folder of .npy files.

Data: `imgs`, 50,000 x 784 float32 in a Hangar repository (synthetic, seeded, made once). The
stage maps `feats:scale` (x * 2 + 1, batches of 256) from `imgs` to `out`. Measured, every run of
a command timed from its start (interpreter, imports, Hangar) to its exit:

- full: `hpipe repro` in a fresh copy of the repository (no output yet: every sample computed and
  written), alternating with the plain loop: a script that loads the same arrays from an .npy
  file, computes the same batches and writes the same Hangar column, then commits.
- incremental: a data commit changing 1% of `imgs` (500 samples, spread out; untimed), then
  `hpipe repro`; and the same with 5 samples (0.01%), alternating. The 5-sample run is the
  stage's fixed cost per run: start-up, diff, writer checkout, commit.
- `hpipe repro -f` on the same commit (every sample computed again; Hangar stores no new data).
- The floor for any writer of this repository: a plain script that opens a writer checkout,
  writes 5 samples of a column of its own and commits, through `hangar_pipe.data` (with
  compat's patches of Hangar's writer), and the same script through Hangar's own code.
- DVC: the same 50,000 samples as .npy files in a folder, a `cmd:` stage running the same
  function over every file into an output folder. After a change to 1% of the files, `dvc repro`
  reruns the stage, which must process the whole folder again, and hashes and caches it.

Run from the repo root:  .venv/bin/python benchmarks/bench_map.py [--reps 3] [--no-dvc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from _common import (
    ENV,
    WORK,
    dvc_version,
    ensure_dvc,
    init_dvc,
    loadavg,
    machine,
    make_hangar_repo,
    run,
    summary,
    table,
    timed,
)

PY = sys.executable
HPIPE = [PY, "-m", "hangar_pipe.cli"]
N, DIM = 50_000, 784
BASE = WORK / "map" / "base"
FEATS = """import numpy as np

def scale(batch):
    (x,) = batch.values()
    return x * np.float32(2) + np.float32(1)
"""
PIPELINE = """data: {repo: .}
stages:
  features:
    uses: map
    with: {fn: "feats:scale", inputs: [imgs], outputs: [out], batch: 256}
    deps: [{hangar: [imgs]}]
    outs: [{hangar: [out]}]
"""
PLAIN = """import sys, numpy as np
sys.path.insert(0, ".")
from feats import scale
from hangar_pipe.data import repository
x = np.load("imgs.npy")
co = repository(".").checkout(write=True)
col = co.add_ndarray_column("out", shape=(x.shape[1],), dtype=np.float32)
with col:
    for lo in range(0, len(x), 256):
        y = scale({"imgs": x[lo:lo + 256]})
        for i in range(len(y)):
            col[lo + i] = y[i]
print(co.commit("plain loop"))
co.close()
"""
FLOOR = """import numpy as np
from hangar_pipe.data import repository
co = repository(".").checkout(write=True)
if "scratch" not in co.columns:  # (a column of its own: the map stage's outputs stay its own)
    co.add_ndarray_column("scratch", shape=(784,), dtype=np.float32)
col = co.columns["scratch"]
with col:
    for k in range(5):
        col[k] = np.full(784, float(np.random.default_rng().random()), np.float32)
print(co.commit("5 samples by hand"))
co.close()
"""
# The same, through Hangar 0.5.2's own code: only the shims it needs to import on today's numpy
# and protobuf, none of compat's patches of its writer (the lazy sample maps, status, commit ref).
FLOOR_HANGAR = FLOOR.replace("""from hangar_pipe.data import repository
co = repository(".").checkout(write=True)""", """from hangar_pipe.hangar import compat
compat.patch_protobuf(); compat.patch_numpy(); compat.defer_torch_loader()
import hangar
with compat.quiet():
    co = hangar.Repository(".", exists=True).checkout(write=True)""")
assert FLOOR_HANGAR != FLOOR
CHANGE = """import sys, numpy as np
from hangar_pipe.data import repository
count, salt = int(sys.argv[1]), int(sys.argv[2])
co = repository(".").checkout(write=True)
col = co.columns["imgs"]
step = {N} // count
with col:
    for k in range(0, step * count, step):
        col[k + salt % step] = np.full({DIM}, salt / 1000 + k / 1e6, np.float32)
print(co.commit(f"change {{count}} samples"))
co.close()
""".replace("{N}", str(N)).replace("{DIM}", str(DIM))


def fresh(name: str) -> Path:
    """A copy of the base repository with the stage's files, in benchmarks/.work/map/NAME."""
    folder = WORK / "map" / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BASE / ".hangar", folder / ".hangar")
    (folder / "feats.py").write_text(FEATS)
    (folder / "pipeline.yaml").write_text(PIPELINE)
    (folder / "plain.py").write_text(PLAIN)
    (folder / "change.py").write_text(CHANGE)
    (folder / "floor.py").write_text(FLOOR)
    (folder / "floor_hangar.py").write_text(FLOOR_HANGAR)
    os.link(WORK / "map" / "imgs.npy", folder / "imgs.npy")
    return folder


def setup() -> None:
    make_hangar_repo(BASE, N, DIM)
    npy = WORK / "map" / "imgs.npy"
    if not npy.exists():
        import numpy as np

        np.save(npy, np.random.default_rng(0).random((N, DIM), dtype=np.float32))  # make_hangar_repo's data


def full_vs_plain(reps: int) -> tuple[list[float], list[float], Path]:
    """(hpipe first runs, plain loops, the last hpipe project), alternating."""
    full, plain = [], []
    project = None
    for rep in range(reps):
        project = fresh(f"hpipe{rep}")
        full.append(timed([*HPIPE, "repro"], project, "computing all 50000 samples")[0])
        loop = fresh(f"plain{rep}")
        plain.append(timed([PY, "plain.py"], loop)[0])
        shutil.rmtree(loop)
    assert project is not None
    return full, plain, project


def incremental(project: Path, reps: int) -> tuple[list[float], ...]:
    """(1% runs, 5-sample runs, -f runs, the floor: 5 samples written and committed by a plain
    script through hangar_pipe.data, the same through Hangar's own code), alternating."""
    one, five, forced, floor, floor_hangar = [], [], [], [], []
    for rep in range(reps):
        floor.append(timed([PY, "floor.py"], project)[0])
        floor_hangar.append(timed([PY, "floor_hangar.py"], project)[0])
        run([PY, "change.py", "500", str(rep)], project)
        one.append(timed([*HPIPE, "repro"], project, "500 samples changed (0 added, 500 modified")[0])
        run([PY, "change.py", "5", str(rep + 100)], project)
        five.append(timed([*HPIPE, "repro"], project, "5 samples changed (0 added, 5 modified")[0])
        forced.append(timed([*HPIPE, "repro", "-f"], project, "computing all 50000 samples")[0])
    return one, five, forced, floor, floor_hangar


DVC_STAGE = """import os, numpy as np
from feats import scale
os.makedirs("out", exist_ok=True)
for name in sorted(os.listdir("imgs")):
    np.save(os.path.join("out", name), scale({"imgs": np.load(os.path.join("imgs", name))}))
"""


def dvc_runs(dvc: Path, reps: int) -> tuple[float, list[float]]:
    """(the first `dvc repro`, `dvc repro` after each 1% change): 50,000 .npy files in a folder."""
    import numpy as np

    folder = WORK / "map" / "dvc"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "imgs").mkdir(parents=True)
    x = np.load(WORK / "map" / "imgs.npy")
    for i in range(N):
        np.save(folder / "imgs" / f"{i:05d}.npy", x[i])
    (folder / "feats.py").write_text(FEATS)
    (folder / "stage.py").write_text(DVC_STAGE)
    (folder / "dvc.yaml").write_text("stages:\n  features:\n    cmd: python stage.py\n"
                                     "    deps: [imgs, stage.py, feats.py]\n    outs: [out]\n")
    init_dvc(dvc, folder)
    env_path = os.pathsep.join([str(Path(PY).parent), ENV.get("PATH", "")])
    ENV["PATH"] = env_path
    first = timed([dvc, "repro"], folder)[0]
    again = []
    for rep in range(reps):
        for k in range(0, N, N // 500):
            np.save(folder / "imgs" / f"{k + rep:05d}.npy", np.full(DIM, rep / 1000 + k / 1e6, np.float32))
        again.append(timed([dvc, "repro"], folder, "Running stage 'features'")[0])
    return first, again


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-dvc", action="store_true")
    args = ap.parse_args()
    setup()
    where = machine()
    full, plain, project = full_vs_plain(args.reps)
    one, five, forced, floor, floor_hangar = incremental(project, args.reps)
    dvc = None if args.no_dvc else ensure_dvc()
    dvc_first, dvc_again = dvc_runs(dvc, args.reps) if dvc else (None, [])
    med = statistics.median
    rows = [["hpipe repro, first run (every sample)", med(full), min(full)],
            ["plain loop: same arrays, same function, same Hangar column", med(plain), min(plain)],
            ["hpipe repro after 1% changed (500 samples)", med(one), min(one)],
            ["hpipe repro after 0.01% changed (5 samples): the fixed cost", med(five), min(five)],
            ["hpipe repro -f (every sample again)", med(forced), min(forced)],
            ["the floor: a script writing 5 samples (another column) and committing, through hangar_pipe.data",
             med(floor), min(floor)],
            ["the same script through Hangar's own code (no compat patches of its writer)",
             med(floor_hangar), min(floor_hangar)]]
    if dvc_first is not None:
        rows += [["dvc repro, first run", dvc_first, dvc_first],
                 ["dvc repro after 1% of the files changed", med(dvc_again), min(dvc_again)]]
    print(f"## The map stage: {N:,} x {DIM} float32, incremental vs full\n")
    print(f"Machine: {where}; load average at end {loadavg()}{f'; DVC {dvc_version(dvc)}' if dvc else ''}\n")
    print(table(["what", "median s", "min s"], rows))
    budget = 0.05 * med(full) + med(five)
    print(f"\n1% run: {med(one):.2f} s; target 5% of the full run + the fixed cost = "
          f"{0.05 * med(full):.2f} + {med(five):.2f} = {budget:.2f} s")
    summary("map stage, 1% of 50k samples changed", f"{med(one):.2f} s", f"<= {budget:.2f} s (5% of full + fixed)",
            med(one) <= budget)
    summary("map stage, 5 samples changed", f"{med(five):.2f} s", "< 2 s", med(five) < 2)
    ratio = med(full) / med(plain)
    summary("map stage first run / plain loop writing the same column", f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3)
    if dvc_again:
        vs = med(one) / med(dvc_again)
        print(f"hpipe 1% / DVC 1%: {vs:.3f}x")
        summary("map stage 1% change / DVC over 50k .npy files", f"{vs:.3f}x", "(reported)", None)


if __name__ == "__main__":
    main()
