"""The agent's safety rail, to every branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gridpilot.core.assets import PowerLimits
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.edge_agent.control.rails import decide

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)
LIMITS = PowerLimits(-250, 250)


def test_within_limits_is_accepted_unchanged() -> None:
    d = decide(100, LIMITS, NOW, None, LATER)
    assert d.accepted and d.p_kw == 100.0 and d.reason is None and d.detail == ""


@pytest.mark.parametrize("p_kw", [-250, 250, 0])
def test_limits_are_inclusive(p_kw: float) -> None:
    assert decide(p_kw, LIMITS, NOW, NOW, LATER).p_kw == p_kw


@pytest.mark.parametrize("p_kw", [250.001, -300, 1e9])
def test_out_of_local_limits_is_rejected_not_clamped(p_kw: float) -> None:
    d = decide(p_kw, LIMITS, NOW, None, LATER)
    assert not d.accepted and d.p_kw is None
    assert d.reason is ReasonCode.OUT_OF_LIMITS
    assert "[-250, 250]" in d.detail


@pytest.mark.parametrize("p_kw", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_power_is_an_invalid_command(p_kw: float) -> None:
    assert decide(p_kw, LIMITS, NOW, None, LATER).reason is ReasonCode.INVALID_COMMAND


def test_non_finite_q_or_negative_ramp_is_an_invalid_command() -> None:
    q = decide(10, LIMITS, NOW, None, LATER, q_kvar=float("nan"))
    ramp = decide(10, LIMITS, NOW, None, LATER, ramp_kw_per_s=-1)
    assert q.reason is ReasonCode.INVALID_COMMAND and "q_kvar" in q.detail
    assert ramp.reason is ReasonCode.INVALID_COMMAND and "ramp_kw_per_s" in ramp.detail


def test_a_setpoint_without_end_is_an_invalid_command() -> None:
    d = decide(10, LIMITS, NOW, None, None)
    assert d.reason is ReasonCode.INVALID_COMMAND and "lease" in d.detail


def test_end_not_after_start_is_an_invalid_command() -> None:
    assert decide(10, LIMITS, NOW, LATER, LATER).reason is ReasonCode.INVALID_COMMAND


@pytest.mark.parametrize("end", [NOW, NOW - timedelta(seconds=1)])
def test_an_ended_lease_is_deadline_passed(end: datetime) -> None:
    start = end - timedelta(minutes=5)
    assert decide(10, LIMITS, NOW, start, end).reason is ReasonCode.DEADLINE_PASSED


def test_invalid_beats_deadline_and_deadline_beats_limits() -> None:
    past = NOW - timedelta(seconds=1)
    assert decide(float("nan"), LIMITS, NOW, None, past).reason is ReasonCode.INVALID_COMMAND
    assert decide(999, LIMITS, NOW, None, past).reason is ReasonCode.DEADLINE_PASSED


def test_q_is_accepted_but_said_to_be_ignored_and_ramp_is_accepted() -> None:
    d = decide(10, LIMITS, NOW, None, LATER, q_kvar=5, ramp_kw_per_s=2)
    assert d.accepted
    assert d.detail == "q_kvar ignored: this agent controls active power only"
    assert decide(10, LIMITS, NOW, None, LATER, ramp_kw_per_s=2).detail == ""
