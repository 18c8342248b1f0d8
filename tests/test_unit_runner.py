"""The runner on its own, driven in-process by a fake StageOps: order, parallelism, failures, interrupts."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from hangar_pipe.core.runner import Processes, Runner, StageError
from hangar_pipe.errors import UserError


class Recorder:
    """A reporter that keeps every event."""

    stage_output = None

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def run_started(self, run_id: str | None, stages: list[str]) -> None:
        self.events.append(("run_started", stages))

    def stage_started(self, name: str, reasons: dict[str, Any]) -> None:
        self.events.append(("started", name))

    def stage_done(self, result: Any) -> None:
        self.events.append(("done", (result.name, result.state)))

    def recovered(self, pid: int) -> None:
        self.events.append(("recovered", pid))

    def warning(self, message: str) -> None:
        self.events.append(("warning", message))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def progress(self, name: str, what: str, done: int, total: int | None) -> None:
        pass

    def run_done(self, result: Any) -> None:
        self.events.append(("run_done", result.ok))


class FakeOps:
    """Stages that change, fail or block as told; records what ran and when."""

    def __init__(self, changed: set[str] | None = None, fail: set[str] | None = None,
                 restore: dict[str, str] | None = None, sleep: float = 0.0) -> None:
        self.changed, self.fail, self.restorable = changed, fail or set(), restore or {}
        self.sleep = sleep
        self.checked: list[tuple[str, list[str]]] = []
        self.executed: list[str] = []
        self.recorded: list[str] = []
        self.spans: dict[str, tuple[float, float]] = {}

    def check(self, name: str, upstream_would_run: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        self.checked.append((name, upstream_would_run))
        changed = self.changed is None or name in self.changed
        return {"changed deps": {name: "modified"}} if changed or upstream_would_run else {}, {}

    def restore(self, name: str) -> str | None:
        return self.restorable.get(name)

    def exclusive(self, name: str) -> set[str]:
        return {"data:."} if name.startswith("w") else set()

    def launch(self, name: str) -> Any:
        return lambda procs: self.execute(name, procs)

    def execute(self, name: str, procs: Processes) -> int:
        t0 = time.monotonic()
        self.executed.append(name)
        time.sleep(self.sleep)
        self.spans[name] = (t0, time.monotonic())
        return 1 if name in self.fail else 0

    def record(self, name: str) -> Any:
        self.recorded.append(name)
        return None


# a -> b -> d, a -> c -> d, e alone
UPSTREAM = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": set()}
ORDER = ["a", "b", "c", "d", "e"]


def run(ops: Any, *, order: list[str] = ORDER, **kwargs: Any) -> tuple[Any, Recorder]:
    reporter = Recorder()
    return Runner(order, UPSTREAM, ops, reporter, **kwargs).run(), reporter


def test_stages_run_in_graph_order_and_are_reported() -> None:
    ops = FakeOps()
    result, reporter = run(ops)
    assert result.ok and result.named("ran") == ORDER  # results in graph order
    assert ops.executed == ["a", "e", "b", "c", "d"], "ready stages run first come, first served"
    assert ops.recorded == ops.executed
    assert reporter.events[:2] == [("started", "a"), ("done", ("a", "ran"))]


def test_unchanged_stages_are_skipped_and_upstream_changes_are_passed_down() -> None:
    ops = FakeOps(changed={"b"})
    result, _ = run(ops, dry_run=True)
    assert result.named("skipped") == ["a", "c", "e"] and result.named("would run") == ["b", "d"]
    assert ("d", ["b"]) in ops.checked and ops.executed == []


def test_independent_stages_overlap_with_jobs() -> None:
    ops = FakeOps(sleep=0.3)
    result, _ = run(ops, order=["a", "e"], jobs=2)
    (a0, a1), (e0, e1) = ops.spans["a"], ops.spans["e"]
    assert result.ok and a0 < e1 and e0 < a1, "a and e ran at the same time"
    ops = FakeOps(sleep=0.1)
    run(ops, order=["a", "e"], jobs=1)
    (a0, a1), (e0, e1) = ops.spans["a"], ops.spans["e"]
    assert a1 <= e0, "one job: one after the other"


def test_a_failure_stops_new_stages() -> None:
    ops = FakeOps(fail={"b"})
    result, _ = run(ops)
    assert result.named("failed") == ["b"] and not result.ok
    assert ops.executed == ["a", "e", "b"], "nothing starts after the failure"
    assert "b" not in ops.recorded and "c" not in result.named("ran", "failed", "blocked")


def test_keep_going_runs_what_does_not_depend_on_the_failure() -> None:
    ops = FakeOps(fail={"b"})
    result, _ = run(ops, keep_going=True)
    assert result.named("failed") == ["b"]
    assert result.named("ran") == ["a", "c", "e"]
    assert result["d"].state == "blocked" and result["d"].reasons == {"upstream failed": ["b"]}
    assert "command exited with code 1" in (result["b"].error or "")


def test_held_and_restored_stages_do_not_execute() -> None:
    ops = FakeOps(restore={"c": "20260101-000000-abcd"})
    result, _ = run(ops, held={"e": "frozen"})
    assert result["e"].state == "frozen" and result["c"].state == "restored"
    assert result["c"].restored_from == "20260101-000000-abcd"
    assert "c" not in ops.executed and "e" not in ops.executed


def test_an_error_while_checking_fails_that_stage_only_with_keep_going() -> None:
    class Broken(FakeOps):
        def check(self, name: str, upstream_would_run: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
            if name == "c":
                raise UserError("params key gone")
            return super().check(name, upstream_would_run)

    result, _ = run(Broken(), keep_going=True)
    assert result["c"].state == "failed" and result["c"].error == "params key gone"
    assert result["d"].state == "blocked" and result["e"].state == "ran"
    with pytest.raises(UserError):  # a dry run reports it as bad input
        run(Broken(), dry_run=True)


def test_a_record_error_fails_the_stage() -> None:
    class NoOutput(FakeOps):
        def record(self, name: str) -> Any:
            raise StageError("command succeeded but did not produce out.txt")

    result, _ = run(NoOutput(), order=["a"])
    assert result["a"].state == "failed" and "did not produce" in (result["a"].error or "")


def test_verify_outcome_goes_into_the_result() -> None:
    class Verifying(FakeOps):
        def record(self, name: str) -> Any:
            return "reproduced exactly"

    result, _ = run(Verifying(), order=["a"])
    assert result["a"].verify == "reproduced exactly"
    assert result["a"].to_dict()["verify"] == "reproduced exactly"


def test_sigterm_stops_running_commands_and_reports_them_interrupted(tmp_path) -> None:
    class Sleeper(FakeOps):
        def execute(self, name: str, procs: Processes) -> int:
            self.executed.append(name)
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return procs.run("sleep 30", shell=True, cwd=str(tmp_path), env=dict(os.environ))

    ops = Sleeper()
    before = signal.getsignal(signal.SIGTERM)
    t0 = time.monotonic()
    result, reporter = run(ops, order=["a", "e"])
    assert time.monotonic() - t0 < 10, "the command was stopped, not waited for"
    assert result.interrupted and not result.ok
    assert result["a"].state == "interrupted" and ops.recorded == []
    assert ("done", ("a", "interrupted")) in reporter.events
    assert "e" not in ops.executed
    assert signal.getsignal(signal.SIGTERM) == before  # the runner put the old handler back


def test_with_jobs_a_failure_lets_the_running_stage_finish() -> None:
    class SlowE(FakeOps):
        def execute(self, name: str, procs: Processes) -> int:
            self.executed.append(name)
            time.sleep(0.4 if name == "e" else 0.0)
            return 1 if name == "a" else 0

    ops = SlowE()
    result, _ = run(ops, jobs=2)
    assert result["a"].state == "failed" and result["e"].state == "ran", "e finished and was recorded"
    assert ops.recorded == ["e"] and "b" not in ops.executed


def test_a_stage_that_cannot_be_launched_fails_alone() -> None:
    class Unresolvable(FakeOps):
        def launch(self, name: str) -> Any:
            if name == "c":
                raise UserError("unknown ref 'mastr'")
            return super().launch(name)

    result, reporter = run(Unresolvable(), keep_going=True)
    assert result["c"].state == "failed" and result["c"].error == "unknown ref 'mastr'"
    assert ("started", "c") not in reporter.events
    assert result["b"].state == "ran" and result["d"].state == "blocked"


def test_two_writers_of_one_repository_never_run_at_once() -> None:
    """With -j 3, three independent stages run together, but the two writing the same data
    repository one after the other."""
    ops = FakeOps(sleep=0.3)
    reporter = Recorder()
    result = Runner(["w1", "w2", "r"], {"w1": set(), "w2": set(), "r": set()}, ops, reporter, jobs=3).run()
    assert result.ok and sorted(ops.executed) == ["r", "w1", "w2"]
    first, second = sorted([ops.spans["w1"], ops.spans["w2"]])
    assert second[0] >= first[1] and ops.spans["r"][0] < first[1]  # one writer waited; r did not
