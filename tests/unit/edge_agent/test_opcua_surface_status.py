"""What a SCADA sees: write results and telemetry quality as OPC UA status codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asyncua.ua import StatusCodes as S
from asyncua.ua import VariantType

from gridpilot.core.lifecycle import ReasonCode as R
from gridpilot.core.telemetry import Sample
from gridpilot.core.telemetry_fields import BY_NAME
from gridpilot.edge_agent.control.local_control import LocalResult, Outcome
from gridpilot.edge_agent.opcua_surface.status import (
    WAITING,
    PointValue,
    setpoint_problem,
    telemetry_point,
    write_status,
)


@pytest.mark.parametrize(
    ("outcome", "reason", "release", "expected"),
    [
        (Outcome.APPLIED, None, False, S.Good),
        (Outcome.APPLIED, None, True, S.Good),
        (Outcome.PENDING, None, False, S.GoodCompletesAsynchronously),
        (Outcome.REJECTED, R.OUT_OF_LIMITS, False, S.BadOutOfRange),
        (Outcome.REJECTED, R.INVALID_COMMAND, False, S.BadOutOfRange),
        (Outcome.REJECTED, R.INVALID_COMMAND, True, S.BadInvalidState),
        (Outcome.REJECTED, R.PRIORITY_CONFLICT, False, S.BadLocked),
        (Outcome.REJECTED, R.LOCAL_CONTROL, False, S.BadLocked),
        (Outcome.FAILED, R.DEVICE_WRITE_FAILED, False, S.BadDeviceFailure),
        (Outcome.REJECTED, R.DEVICE_UNREACHABLE, False, S.BadDeviceFailure),
        (Outcome.REJECTED, R.AGENT_OFFLINE, False, S.BadInvalidState),
    ],
)
def test_write_status_maps_every_outcome(
    outcome: Outcome, reason: R | None, release: bool, expected: int
) -> None:
    assert write_status(LocalResult(outcome, "loc-1", reason), release=release) == expected


@pytest.mark.parametrize(
    ("vtype", "value", "expected"),
    [
        (VariantType.Double, 50.0, None),
        (VariantType.Double, -100.0, None),
        (VariantType.Double, 100.0, None),
        (VariantType.Double, 100.5, S.BadOutOfRange),
        (VariantType.Double, float("nan"), S.BadOutOfRange),
        (VariantType.Double, float("inf"), S.BadOutOfRange),
        (VariantType.Int64, 50, S.BadTypeMismatch),
        (VariantType.Float, 50.0, S.BadTypeMismatch),
        (VariantType.String, "50", S.BadTypeMismatch),
        (None, None, S.BadTypeMismatch),
    ],
)
def test_setpoint_problem(vtype: VariantType | None, value: object, expected: int | None) -> None:
    assert setpoint_problem(vtype, value, -100.0, 100.0) == expected


NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
P_KW, STATE, FAULT = BY_NAME["p_kw"], BY_NAME["state"], BY_NAME["fault"]
SOH = BY_NAME["soh_pct"]


def sample(age_s: float = 0.0, **kw: object) -> Sample:
    return Sample(asset_id="b", ts=NOW - timedelta(seconds=age_s), **kw)  # type: ignore[arg-type]


def point(spec: object, s: Sample | None, prev: PointValue | None = None) -> PointValue:
    return telemetry_point(spec, s, prev, NOW, stale_after_s=10)  # type: ignore[arg-type]


def test_fresh_values_are_good_with_the_sample_time() -> None:
    s = sample(1, p_kw=5.0, state="idle", details={"soh_pct": 98, "fault": False})
    assert point(P_KW, s) == PointValue(5.0, S.Good, s.ts)
    assert point(STATE, s) == PointValue("idle", S.Good, s.ts)
    assert point(SOH, s) == PointValue(98.0, S.Good, s.ts)  # ints become Double
    assert point(FAULT, s) == PointValue(False, S.Good, s.ts)


def test_nothing_yet_is_waiting_for_initial_data() -> None:
    assert point(P_KW, None) == WAITING
    assert WAITING.status == S.BadWaitingForInitialData
    assert point(P_KW, sample(state="idle")) == WAITING  # this device never had p_kw


def test_stale_keeps_the_value_as_uncertain() -> None:
    old = sample(11, p_kw=5.0)
    assert point(P_KW, old) == PointValue(5.0, S.UncertainLastUsableValue, old.ts)
    marked = sample(0, p_kw=5.0, details={"quality": {"p_kw": "stale"}})
    assert point(P_KW, marked).status == S.UncertainLastUsableValue
    # the device became unavailable: the poller's sample has no values
    prev = PointValue(5.0, S.Good, NOW - timedelta(seconds=3))
    gone = sample(0, state="unavailable", details={"quality": {"p_kw": "stale"}})
    assert point(P_KW, gone, prev) == PointValue(5.0, S.UncertainLastUsableValue, prev.source_ts)


def test_bad_quality_or_unusable_value_is_bad_without_value() -> None:
    bad = sample(0, p_kw=5.0, details={"quality": {"p_kw": "bad"}})
    assert point(P_KW, bad) == PointValue(None, S.BadDeviceFailure, bad.ts)
    weird = sample(0, details={"soh_pct": "n/a", "fault": 1})
    assert point(SOH, weird).status == S.BadDeviceFailure
    assert point(FAULT, weird).status == S.BadDeviceFailure  # 1 is not a bool


def test_a_new_timestamp_alone_is_no_change() -> None:
    a = PointValue(5.0, S.Good, NOW)
    assert a.same_as(PointValue(5.0, S.Good, NOW + timedelta(seconds=1)))
    assert not a.same_as(PointValue(5.0, S.UncertainLastUsableValue, NOW))
    assert not a.same_as(PointValue(6.0, S.Good, NOW)) and not a.same_as(None)
