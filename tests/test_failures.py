"""Failures, interrupts, parallel stages and the one-repro-at-a-time lock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import Project, user_error


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


FAILING = """
    stages:
      bad:
        cmd: echo partial > bad.txt && exit 3
        outs: [bad.txt]
      independent:
        cmd: echo ok > ind.txt
        outs: [ind.txt]
      after_bad:
        cmd: cp bad.txt after.txt
        deps: [bad.txt]
        outs: [after.txt]
"""


def test_failure_stops_the_run(project: Project) -> None:
    project.pipeline(FAILING)
    done = project.hpipe("repro", check=1)
    assert "✗ bad: failed after" in done.out and "command exited with code 3" in done.out
    assert "stage 'bad' failed" in done.out
    assert not project.exists("ind.txt") and not project.exists("after.txt")
    assert not project.exists("pipeline.lock")


def test_keep_going_runs_what_does_not_depend_on_the_failure(project: Project) -> None:
    project.pipeline(FAILING)
    done = project.hpipe("repro", "-k", check=1)
    assert project.read("ind.txt") == "ok\n"
    assert "✗ after_bad: not run (upstream failed: bad)" in done.out
    assert not project.exists("after.txt")
    lock = yaml.safe_load(project.read("pipeline.lock"))
    assert set(lock["stages"]) == {"independent"}


def test_failed_stage_keeps_its_old_lock_entry(three_stage: Project) -> None:
    three_stage.hpipe("repro")
    before = yaml.safe_load(three_stage.read("pipeline.lock"))["stages"]["train"]
    three_stage.pipeline(three_stage.read("pipeline.yaml").replace(
        "cmd: python steps.py train", "cmd: python steps.py train && exit 7"))
    done = three_stage.hpipe("repro", check=1)
    assert "✗ train: failed" in done.out and "code 7" in done.out
    assert yaml.safe_load(three_stage.read("pipeline.lock"))["stages"]["train"] == before
    assert "evaluate" not in three_stage.ran(done)


def test_jobs_run_independent_stages_in_parallel(project: Project) -> None:
    stage = """
      {n}:
        cmd: python -c "import time; open('{n}.start','w').write(repr(time.time())); time.sleep(1); open('{n}.end','w').write(repr(time.time()))"
        outs: [{n}.start, {n}.end]
    """
    project.pipeline("stages:" + "".join(stage.format(n=n) for n in ("a", "b")))

    def spans() -> list[tuple[float, float]]:
        return [(float(project.read(f"{n}.start")), float(project.read(f"{n}.end"))) for n in "ab"]

    project.hpipe("repro", "-j", "2")
    (a0, a1), (b0, b1) = spans()
    assert a0 < b1 and b0 < a1, "with -j 2 the two stages overlap"
    project.hpipe("repro", "-f")
    (a0, a1), (b0, b1) = spans()
    assert a1 <= b0 or b1 <= a0, "by default stages run one at a time"


SLOW = """
    stages:
      first:
        cmd: echo one > first.txt
        outs: [first.txt]
      slow:
        cmd: sleep 60 & echo $! > sleep.pid; wait
        deps: [first.txt]
        outs: [slow.txt]
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_stops_the_command_and_keeps_lock_consistent(project: Project, sig: int) -> None:
    project.pipeline(SLOW)
    proc = project.popen("repro")
    sleeper = int(wait_for(project.root / "sleep.pid"))
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Interrupted" in out and "✗ slow: interrupted" in out
    time.sleep(0.2)
    assert not alive(sleeper), "the stage's process group was stopped"
    lock = yaml.safe_load(project.read("pipeline.lock"))
    assert set(lock["stages"]) == {"first"}
    done = project.hpipe("status", "--json")
    assert '"slow"' in done.out and '"first"' not in done.out


def test_second_repro_waits_then_names_the_holder(project: Project) -> None:
    project.pipeline(SLOW)
    proc = project.popen("repro")
    try:
        sleeper = int(wait_for(project.root / "sleep.pid"))
        line = user_error(project.hpipe("repro", check=None))
        assert f"another hpipe repro is running (process {proc.pid} holds" in line
        assert project.hpipe("status", "--json").code == 0, "status does not need the lock"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert not alive(sleeper)


def test_killed_run_is_recovered(project: Project) -> None:
    project.pipeline(SLOW.replace("sleep 60 & echo $! > sleep.pid; wait",
                                  "test -f go || { sleep 60 & echo $! > sleep.pid; wait; }; echo 2 > slow.txt"))
    proc = project.popen("repro")
    sleeper = int(wait_for(project.root / "sleep.pid"))
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait(timeout=30)
    os.killpg(os.getpgid(sleeper), signal.SIGKILL)  # an orphaned command outlives a SIGKILLed hpipe
    proc.communicate(timeout=30)
    project.write("go", "")
    done = project.hpipe("repro")
    assert f"taking over from an interrupted run (process {proc.pid})" in done.out
    assert project.ran(done) == ["slow"]
    assert project.hpipe("repro").out.strip().endswith("Everything is up to date.")


def test_lock_written_after_each_stage(project: Project) -> None:
    project.pipeline("""
        stages:
          one:
            cmd: echo 1 > one.txt
            outs: [one.txt]
          two:
            cmd: python -c "import yaml; s = yaml.safe_load(open('pipeline.lock'))['stages']; open('two.txt', 'w').write(','.join(s))"
            deps: [one.txt]
            outs: [two.txt]
    """)
    project.hpipe("repro")
    assert project.read("two.txt") == "one", "stage one was in the lock before stage two ran"


def test_dead_pid_in_lock_file_is_taken_over(three_stage: Project) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (three_stage.root / ".hpipe").mkdir()
    (three_stage.root / ".hpipe/repro.lock").write_text(f"{dead.pid}\n")
    done = three_stage.hpipe("repro")
    assert f"taking over from an interrupted run (process {dead.pid})" in done.out
    assert three_stage.ran(done) == ["prepare", "train", "evaluate"]


def test_an_orphaned_stage_is_stopped_before_it_could_run_twice(project: Project) -> None:
    """SIGKILL of hpipe leaves its stage running (its own process group); the next repro stops
    it first and says so, so the stage never runs twice at once."""
    project.write("step.py", """
        import os, pathlib, time
        log = pathlib.Path("starts.txt")
        earlier = [int(p) for p in log.read_text().split()] if log.exists() else []
        running = [p for p in earlier if os.path.exists(f"/proc/{p}")
                   and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        with log.open("a") as fh:
            fh.write(f"{os.getpid()}\\n")
        if running:
            pathlib.Path("overlap.txt").write_text(str(running))
        if pathlib.Path("slow").exists():
            time.sleep(60)
        pathlib.Path("out.txt").write_text("done")
    """)
    project.write("slow", "")
    project.pipeline("""
        stages:
          step: {cmd: python step.py, deps: [step.py], outs: [out.txt]}
    """)
    proc = project.popen("repro")
    orphan = int(wait_for(project.root / "starts.txt"))
    proc.kill()
    proc.wait(timeout=30)  # (its output pipes stay open: the orphan holds them)
    assert alive(orphan), "the stage outlives a SIGKILLed hpipe"
    group = os.getpgid(orphan)
    (project.root / "slow").unlink()
    done = project.hpipe("repro")
    assert f"stopped orphaned stage 'step' (process group {group})" in done.err
    assert project.ran(done) == ["step"] and not alive(orphan)
    assert not project.exists("overlap.txt"), "the stage ran twice at once"
    assert not os.listdir(project.root / ".hpipe" / "running"), "nothing left recorded"
    proc.communicate(timeout=30)


def test_a_recorded_group_that_is_gone_or_reused_is_left_alone(tmp_path: Path) -> None:
    from hangar_pipe.core.orphans import RunningStages

    running = RunningStages(tmp_path / "running")
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        running.add(other.pid, "reused")
        record = tmp_path / "running" / str(other.pid)
        record.write_text(record.read_text().replace('"start": "', '"start": "1'))  # another start time
        done = subprocess.Popen(["true"], start_new_session=True)
        done.wait()
        running.add(done.pid, "finished")
        assert running.stop_orphans(grace=0.5) == []
        assert other.poll() is None, "a group with the pid of a recorded one but another start is not ours"
        assert list((tmp_path / "running").iterdir()) == []
    finally:
        other.kill()
        other.wait()
