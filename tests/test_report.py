"""`hpipe report` in a real browser (headless Chromium: Debian's `chromium`, installed by .ci/run),
and `hpipe plots --runs`: the page renders its table, charts, matrices and graph with no network."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import Project
from hangar_repo import Repo, labels

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.fail("the report's browser test needs Chromium (Debian: apt install chromium; .ci/run installs it)")


def browse(page: Path, tmp: Path, *args: str, fragment: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}",
                           *args, page.resolve().as_uri() + fragment],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project_with_runs(project: Project) -> Project:
    data = Repo(project.root)
    data.write("first", labels=labels(10))
    project.write("train.py", """
        import json, yaml
        from hangar_pipe.data import open_columns
        scale = yaml.safe_load(open("params.yaml"))["scale"]
        with open_columns(["labels"]) as cols:
            col = cols["labels"]
            total = int(sum(int(col[k][0]) for k in col.keys()))
        json.dump({"score": total * scale}, open("metrics.json", "w"))
        with open("history.csv", "w") as f:
            f.write("epoch,loss,acc\\n" + "".join(f"{e},{1 / (e + scale)},{e / 10 + total / 1000}\\n" for e in range(4)))
        with open("confusion.csv", "w") as f:
            f.write(f"actual,0,1\\n0,{total},2\\n1,3,{scale}\\n")
    """)
    project.write("params.yaml", "scale: 1\n")
    project.pipeline("""
        stages:
          train:
            cmd: python train.py
            deps: [train.py, {hangar: [labels]}]
            params: [scale]
            metrics: [metrics.json]
            plots: [history.csv, confusion.csv]
          summary:
            cmd: cat metrics.json > summary.txt
            deps: [metrics.json]
            outs: [summary.txt]
    """)
    project.hpipe("repro")
    data.write("relabel", labels={i: np.array([9], dtype=np.int64) for i in range(10)})
    project.hpipe("repro")
    project.hpipe("exp", "run", "-S", "scale=2,3", "--name", "sweep")
    return project


def test_the_report_renders_in_a_browser(project_with_runs: Project, tmp_path: Path) -> None:
    project = project_with_runs
    page = project.root / "report.html"
    assert "wrote report.html" in project.hpipe("report", "-o", "report.html").out
    assert not re.search(r"""(src|href)=["']?https?:""", page.read_text())  # nothing from the network
    dom = browse(page, tmp_path, "--dump-dom", "--virtual-time-budget=5000", fragment="#sort=score:desc")
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    assert 'data-rendered="yes"' in html
    rows = re.findall(r'<tr data-run="([^"]+)"', html)
    assert len(rows) == 4  # two repros, two experiment points
    scores = [int(v) for v in re.findall(r'<td class="num">(\d+)</td><td class="num">0</td>', html)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4  # sorted by the address's #sort
    assert 'aria-sort="descending"' in html and 'data-column="score"' in html
    commits = html.split('id="commits"')[1].split('id="curves"')[0]
    assert commits.count('class="point"') >= 4 and 'class="curve"' in commits
    curves = html.split('id="curves"')[1].split('id="matrices"')[0]
    assert curves.count('class="curve"') >= 3  # the newest three runs, ticked by default
    matrices = html.split('id="matrices"')[1].split('id="graph"')[0]
    assert matrices.count('class="cell"') == 4
    assert re.findall(r'data-stage="([^"]+)"', html) == ["train", "summary"]
    assert html.count('class="edge"') == 1
    shot = tmp_path / "report.png"
    done = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2200")
    assert done.returncode == 0 and shot.stat().st_size > 20_000, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_overlays_runs_and_points(project_with_runs: Project) -> None:
    project = project_with_runs
    points = project.hpipe("exp", "show", "--csv").out.splitlines()[1:]
    ids = [line.split(",")[0] for line in points]
    done = project.hpipe("plots", "--runs", *ids, "-o", "compare")
    assert done.out.strip() == "wrote compare/history.png"  # the confusion matrix is not overlaid
    assert (project.root / "compare/history.png").stat().st_size > 10_000
    line = project.hpipe("plots", "--runs", "nosuchrun", check=2).err
    assert "no run" in line or "no experiment point" in line
