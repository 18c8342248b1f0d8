"""The data remote: `hpipe data push` / `hpipe data pull` vs Hangar's own CLI, same data, same server.

A seeded N x 784 uint8 `imgs` column plus N int64 `labels` in one commit. Each repetition starts
a fresh `hangar server` (tests/hangarserver.py, the recommended FAST_CONFIG) per tool and times, alternating:

- push:  `hpipe data push`                      vs  `hangar push origin master`
- pull:  `hpipe data pull` (into a folder with only pipeline.yaml, whose stage reads both
         columns)                               vs  `hangar clone` + `hangar fetch-data origin master`

Both pulls fetch every sample of the commit (the stage reads both columns), so the work is the same.

Run from the repo root:  .venv/bin/python benchmarks/bench_data_remote.py [--n 50000] [--reps 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from pathlib import Path

from _common import HPIPE, REPO, WORK, loadavg, machine, ratio, run, table, timed

sys.path.insert(0, str(REPO / "tests"))
import hangarserver  # noqa: E402
from hangar_repo import READER  # noqa: E402

HANGAR = [sys.executable, "-c", "import sys; from hangar_pipe.hangar import compat;"
          " compat.import_hangar(); from hangar.cli import cli; sys.argv[0] = 'hangar'; cli.main()"]
CONFIG: str | None = hangarserver.FAST_CONFIG  # --default-config: Hangar's own


def pipeline(address: str) -> str:
    """pipeline.yaml: the data remote, and one stage reading both columns (tests/hangar_repo.py)."""
    return f"data: {{remote: '{address}'}}\n" + textwrap.dedent(READER)


def make_source(folder: Path, n: int) -> str:
    """The source repository (made once per size): its commit."""
    marker = folder / "commit.txt"
    if marker.exists():
        return marker.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    import numpy as np

    from hangar_pipe.hangar import compat

    hangar = compat.import_hangar()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    y = rng.integers(0, 10, (n, 1)).astype(np.int64)
    with compat.quiet():
        repo = hangar.Repository(str(folder), exists=False)
        repo.init(user_name="bench", user_email="bench@example.com")
        co = repo.checkout(write=True)
    imgs = co.add_ndarray_column("imgs", prototype=x[0])
    labels = co.add_ndarray_column("labels", prototype=y[0])
    with imgs, labels:
        for i in range(n):
            imgs[i] = x[i]
            labels[i] = y[i]
    commit: str = co.commit(f"{n} samples")
    co.close()
    marker.write_text(commit)
    return commit


def fresh_copy(source: Path, folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder, symlinks=True)
    return folder


def hpipe_round(source: Path, base: Path) -> tuple[float, float]:
    server = hangarserver.start(base / "server-hpipe", config=CONFIG)
    try:
        project = fresh_copy(source, base / "hpipe-a")
        (project / "pipeline.yaml").write_text(pipeline(server.address))
        push, _ = timed([HPIPE, "data", "push"], project, "Pushed master")
        clone = base / "hpipe-b"
        shutil.rmtree(clone, ignore_errors=True)
        clone.mkdir()
        (clone / "pipeline.yaml").write_text(pipeline(server.address))
        pull, _ = timed([HPIPE, "data", "pull"], clone, "Fetched")
    finally:
        server.stop()
    shutil.rmtree(base / "server-hpipe", ignore_errors=True)  # kept (with its log) after a failure
    return push, pull


def hangar_round(source: Path, base: Path) -> tuple[float, float]:
    server = hangarserver.start(base / "server-hangar", config=CONFIG)
    try:
        repo = fresh_copy(source, base / "hangar-a")
        run([*HANGAR, "remote", "add", "origin", server.address], repo)
        push, _ = timed([*HANGAR, "push", "origin", "master"], repo)
        clone = base / "hangar-b"
        shutil.rmtree(clone, ignore_errors=True)
        clone.mkdir()
        t_clone, _ = timed([*HANGAR, "clone", server.address, "--name", "b", "--email", "b@x"], clone)
        t_data, _ = timed([*HANGAR, "fetch-data", "origin", "master"], clone)
    finally:
        server.stop()
    shutil.rmtree(base / "server-hangar", ignore_errors=True)  # kept (with its log) after a failure
    return push, t_clone + t_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--default-config", action="store_true",
                        help="Hangar's default server config (50 threads), not the recommended one")
    args = parser.parse_args()
    global CONFIG
    if args.default_config:
        CONFIG = None
    base = WORK / "data-remote"
    print(f"# {machine()}")
    source = base / f"source-{args.n}"
    make_source(source, args.n)
    times: dict[str, list[float]] = {k: [] for k in ("hpipe push", "hpipe pull", "hangar push", "hangar pull")}
    for rep in range(args.reps):
        order = (hpipe_round, hangar_round) if rep % 2 == 0 else (hangar_round, hpipe_round)
        for fn in order:
            push, pull = fn(source, base)
            tool = "hpipe" if fn is hpipe_round else "hangar"
            times[f"{tool} push"].append(push)
            times[f"{tool} pull"].append(pull)
            print(f"rep {rep} {tool}: push {push:.2f}s pull {pull:.2f}s (load {loadavg()})", flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    rows = [[what, med[f"hpipe {what}"], med[f"hangar {what}"], ratio(med[f"hpipe {what}"], med[f"hangar {what}"]),
             f"{args.n / med[f'hpipe {what}']:.0f}"] for what in ("push", "pull")]
    print(f"\n{args.n} x 784 uint8 + {args.n} int64 labels; median of {args.reps}; load at end {loadavg()}")
    print(table(["step", "hpipe (s)", "hangar CLI (s)", "hpipe / hangar", "hpipe samples/s"], rows))


if __name__ == "__main__":
    main()
