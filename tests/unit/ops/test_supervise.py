"""The supervisor of `gridpilot up`'s children, with real short-lived processes
and a clock the test advances."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from gridpilot.ops.supervise import Child, CrashLoop, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crasher(tmp_path: Path) -> Child:
    code = "import sys; print('boom: no config'); sys.exit(3)"
    return Child("agent", [sys.executable, "-c", code], {}, tmp_path / "agent.log")


def exited(child: Child) -> Child:
    child.proc.wait(10)
    return child


def test_an_exited_child_is_logged_with_why_and_restarted_after_a_doubling_backoff(
    tmp_path: Path,
) -> None:
    clock, out = Clock(), io.StringIO()
    restarted: list[int] = []
    sup = Supervisor(
        [exited(crasher(tmp_path))],
        clock=clock,
        out=out,
        on_restart=lambda c: restarted.append(c.proc.pid),
    )
    sup.tick()
    assert "agent exited (exit code 3); restarting in 1 s" in out.getvalue()
    assert "boom: no config" in out.getvalue()
    clock.now += 0.5
    sup.tick()
    assert sup.restarts == 0  # still backing off
    clock.now += 0.6
    sup.tick()
    assert sup.restarts == 1 and restarted == [sup.children[0].proc.pid]
    exited(sup.children[0])
    sup.tick()
    assert "restarting in 2 s" in out.getvalue()
    sup.children[0].stop()


def test_a_child_killed_by_a_signal_says_which(tmp_path: Path) -> None:
    child = Child(
        "headend", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "h.log"
    )
    child.proc.kill()
    child.proc.wait(10)
    assert child.exit_reason() == "killed by SIGKILL"


def test_a_crash_loop_stops_with_a_reason(tmp_path: Path) -> None:
    clock, out = Clock(), io.StringIO()
    sup = Supervisor([exited(crasher(tmp_path))], clock=clock, out=out, max_crashes=5, window_s=120)
    with pytest.raises(CrashLoop, match=r"agent exited 5 times within 120 s; stopping everything"):
        for _ in range(5):
            sup.tick()  # notices the exit
            clock.now += 20
            sup.tick()  # restarts it
            exited(sup.children[0])
    assert sup.restarts == 4


def test_a_child_that_ran_a_good_while_starts_its_backoff_over(tmp_path: Path) -> None:
    clock, out = Clock(), io.StringIO()
    sup = Supervisor([exited(crasher(tmp_path))], clock=clock, out=out, window_s=120)
    for _ in range(4):
        sup.tick()
        clock.now += 40
        sup.tick()
        exited(sup.children[0])
        clock.now += 200  # it "ran" longer than the window before exiting again
    sup.tick()
    assert out.getvalue().count("restarting in 1 s") == 5
    sup.children[0].stop()
