"""The warm worker (core/zygote.py, core/warm.py): built-in stages fork from one zygote per repro
that imported torch and Hangar once, and keep the isolation, interrupts, environment and exit
codes of a fresh process each."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import Project
from test_failures import alive, wait_for
from test_training import PARAMS, PIPELINE, tiny_data

from hangar_pipe.core.warm import WarmWorker

PROBE = """
    import ctypes, json, os, signal, sys, time
    from pathlib import Path

    from hangar_pipe.errors import UserError

    CALLS = []  # a module-level counter: a stage sees only its own call

    def run(name, crash=None, sleep=0):
        CALLS.append(name)
        info = {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "calls": len(CALLS),
                "stage": os.environ.get("HPIPE_STAGE"), "cwd": os.getcwd(), "argv0": sys.argv[0],
                "torch_loaded": "torch" in sys.modules, "path0": sys.path[0]}
        Path(f"{name}.json").write_text(json.dumps(info))
        print(f"out of {name}")
        print(f"err of {name}", file=sys.stderr)
        if crash == "kill" and not Path("no-crash").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        if crash == "segv" and not Path("no-crash").exists():
            ctypes.string_at(0)
        if crash == "usererror":
            raise UserError("probe.py:1: bad input")
        if sleep:
            Path(f"{name}.started").write_text(str(os.getpid()))
            time.sleep(sleep)
"""


def probes(project: Project, crash: str | None = None) -> None:
    """Three `uses: probe:run` stages, the second crashing as told (until `no-crash` exists)."""
    project.write("probe.py", PROBE)
    with_b = {"name": "b", "crash": crash} if crash else {"name": "b"}
    project.pipeline(f"""
        stages:
          a: {{uses: "probe:run", with: {{name: a}}, outs: [a.json]}}
          b: {{uses: "probe:run", with: {json.dumps(with_b)}, outs: [b.json]}}
          c: {{uses: "probe:run", with: {{name: c}}, deps: [a.json], outs: [c.json]}}
    """)


def info(project: Project, name: str) -> dict[str, object]:
    return json.loads(project.read(f"{name}.json"))


def test_stages_fork_from_one_zygote_each_in_a_session_of_its_own(project: Project) -> None:
    probes(project)
    done = project.hpipe("repro")
    a, b, c = (info(project, n) for n in "abc")
    assert a["ppid"] == b["ppid"] == c["ppid"], "children of one zygote"
    assert len({a["pid"], b["pid"], c["pid"], a["ppid"]}) == 4
    for name, stage in (("a", a), ("b", b), ("c", c)):
        assert stage["pgid"] == stage["pid"] and stage["calls"] == 1 and stage["stage"] == name
        assert stage["cwd"] == str(project.root) == stage["path0"]
        assert str(stage["argv0"]).endswith("hangar_pipe/core/call.py")
        assert f"out of {name}" in done.out and f"err of {name}" in done.err
    assert not alive(int(str(a["ppid"]))), "the zygote ends with the run"
    fresh = project.hpipe("repro", "--force", env={"HPIPE_NO_WARM": "1"})
    assert len({info(project, n)["ppid"] for n in "abc"}) == 1 and "out of b" in fresh.out
    assert info(project, "a")["ppid"] != a["ppid"]


def test_a_user_error_in_a_warm_stage_is_one_line_and_exit_2(project: Project) -> None:
    probes(project, crash="usererror")
    done = project.hpipe("repro", "b", check=1)
    assert "hpipe: error: probe.py:1: bad input" in done.err and "Traceback" not in done.err
    assert "command exited with code 2" in done.out


@pytest.mark.parametrize("crash,signum", [("kill", signal.SIGKILL), ("segv", signal.SIGSEGV)])
def test_a_crashed_stage_fails_only_itself_and_the_next_run_works(project: Project, crash: str,
                                                                  signum: int) -> None:
    probes(project, crash=crash)
    done = project.hpipe("repro", "--keep-going", check=1)
    assert "✗ b: failed after" in done.out and f"command killed by signal {signum}" in done.out
    assert sorted(project.ran(done)) == ["a", "c"], "the zygote served the stages after the crash"
    assert info(project, "c")["ppid"] == info(project, "b")["ppid"]
    project.write("no-crash", "")
    again = project.hpipe("repro")
    assert project.ran(again) == ["b"]
    assert info(project, "b")["calls"] == 1


def test_ctrl_c_stops_a_warm_stage_and_records_nothing(project: Project) -> None:
    project.write("probe.py", PROBE)
    project.pipeline("""
        stages:
          first: {uses: "probe:run", with: {name: first}, outs: [first.json]}
          slow: {uses: "probe:run", with: {name: slow, sleep: 60}, deps: [first.json], outs: [slow.json]}
    """)
    proc = project.popen("repro")
    stage = int(wait_for(project.root / "slow.started"))
    zygote = int(str(info(project, "slow")["ppid"]))
    assert zygote != proc.pid and alive(zygote)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "✗ slow: interrupted" in out
    time.sleep(0.2)
    assert not alive(stage) and not alive(zygote)
    assert set(yaml.safe_load(project.read("pipeline.lock"))["stages"]) == {"first"}
    assert not list((project.root / ".hpipe" / "running").glob("[0-9]*"))


def test_torch_is_imported_once_per_repro_and_training_keeps_its_bytes(tmp_path: Path) -> None:
    """PYTHONPROFILEIMPORTTIME makes every Python process that imports torch say so on stderr."""
    runs = {}
    for mode, extra in (("warm", {}), ("fresh", {"HPIPE_NO_WARM": "1"})):
        project = Project(tmp_path / mode)
        project.root.mkdir()
        x, y = tiny_data()
        np.savez(project.root / "raw.npz", x=x, y=y)
        project.pipeline(PIPELINE)
        project.write("params.yaml", PARAMS.replace("epochs: 3", "epochs: 1"))
        done = project.hpipe("repro", env={"PYTHONPROFILEIMPORTTIME": "1", **extra}, timeout=300)
        assert project.ran(done) == ["ingest", "train", "evaluate"]
        # torch._C (libtorch) is imported whoever imports torch (train and evaluate; not ingest,
        # as Hangar's torch loader is deferred); a stage's progress may share the line: find the
        # entries, not lines that start with one
        torch_imports = re.findall(r"import time:[^|\n]*\|[^|\n]*\| *torch\._C$", done.err, re.MULTILINE)
        weights = torch.load(project.root / "models/model.pt", weights_only=False)["state_dict"]
        scores = json.loads(project.read("metrics/eval.json"))
        history = json.loads(project.read("metrics/train.json"))["history"]
        runs[mode] = (len(torch_imports), {k: v.numpy().tobytes() for k, v in weights.items()},
                      (scores["accuracy"], scores["loss"], history))
    assert runs["warm"][0] == 1 and runs["fresh"][0] == 2  # train and evaluate each
    # the two projects' data commits differ (commit times): the weights and scores do not
    assert runs["warm"][1:] == runs["fresh"][1:], "the same bytes either way"


def _stage_module(folder: Path) -> None:
    (folder / "stagemod.py").write_text(
        "import os, sys\n"
        "print(os.environ['HPIPE_STAGE'], os.getcwd(), sys.argv[1:], flush=True)\n"
        "sys.exit(int(sys.argv[1]))\n")


def test_worker_runs_a_module_with_its_env_cwd_args_and_output(tmp_path: Path) -> None:
    _stage_module(tmp_path)
    worker = WarmWorker([])
    worker.start()
    try:
        env = {**os.environ, "HPIPE_STAGE": "s1", "PYTHONPATH": str(tmp_path)}
        read, write = os.pipe()
        proc = worker.spawn("stagemod", ["3"], env=env, cwd=str(tmp_path), stdout=write)
        os.close(write)
        assert proc is not None and proc.wait() == 3 and proc.wait(timeout=0) == 3
        assert os.read(read, 1000).decode() == f"s1 {tmp_path} ['3']\n"
        os.close(read)
        changed = {**env, "OMP_NUM_THREADS": "7"}  # read at import: a fresh process must read it
        assert worker.spawn("stagemod", ["0"], env=changed, cwd=str(tmp_path), stdout=None) is None
        (tmp_path / "json.py").write_text("")  # shadows a module the zygote imported
        assert worker.spawn("stagemod", ["0"], env=env, cwd=str(tmp_path), stdout=None) is None
        (tmp_path / "json.py").unlink()
        proc = worker.spawn("stagemod", ["0"], env=env, cwd=str(tmp_path), stdout=None)
        assert proc is not None and proc.wait() == 0, "a refusal leaves the zygote serving"
    finally:
        worker.close()
    assert worker.proc is not None and worker.proc.returncode is not None


def test_worker_stage_killed_by_signal_and_timeouts(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(60)\n")
    worker = WarmWorker([])
    worker.start()
    try:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        proc = worker.spawn("sleeper", [], env=env, cwd=str(tmp_path), stdout=None)
        assert proc is not None
        with pytest.raises(Exception, match="timed out"):
            proc.wait(timeout=0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait() == -signal.SIGTERM
    finally:
        worker.close()


def test_worker_gone_means_fresh_processes(tmp_path: Path) -> None:
    _stage_module(tmp_path)
    worker = WarmWorker([])
    worker.start()
    assert worker.proc is not None
    worker.proc.kill()
    worker.proc.wait()
    env = {**os.environ, "HPIPE_STAGE": "s", "PYTHONPATH": str(tmp_path)}
    assert worker.spawn("stagemod", ["0"], env=env, cwd=str(tmp_path), stdout=None) is None
    assert worker.broken
    worker.close()


def test_the_zygote_dies_with_hpipe(tmp_path: Path) -> None:
    """A SIGKILLed hpipe takes its zygote along (PR_SET_PDEATHSIG); a running stage lives on as
    an orphan the next run stops, as a fresh process would."""
    project = Project(tmp_path)
    project.write("probe.py", PROBE)
    project.pipeline("""
        stages:
          slow: {uses: "probe:run", with: {name: slow, sleep: 60}, outs: [slow.json]}
    """)
    proc = project.popen("repro")
    stage = int(wait_for(project.root / "slow.started"))
    zygote = int(str(info(project, "slow")["ppid"]))
    proc.kill()  # the stage lives on, holding hpipe's stdout and stderr: no communicate()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while alive(zygote) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(zygote) and alive(stage)
    probe = project.root / "probe.py"
    probe.write_text(probe.read_text().replace("time.sleep(sleep)", "pass"))
    again = project.hpipe("repro")
    assert "stopped orphaned stage 'slow'" in again.err + again.out and not alive(stage)
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        pipe.close()


def test_an_error_in_a_warm_callable_shows_its_traceback(project: Project) -> None:
    project.write("probe.py", PROBE)
    project.pipeline("""
        stages:
          a: {uses: "probe:run", with: {name: a, nope: 1}, outs: [a.json]}
    """)
    done = project.hpipe("repro", check=1)
    assert "Traceback" in done.err and "TypeError: run() got an unexpected keyword argument 'nope'" in done.err
    assert "command exited with code 1" in done.out
