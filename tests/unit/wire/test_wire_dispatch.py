"""The headend's side of a dispatch on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire import agent, dispatch
from gridpilot.wire.times import ts_to_pb
from gridpilot.workflows.models import ReleaseCommand, SetpointCommand

TS = datetime(2026, 5, 1, 12, 0, 0, 123_457, tzinfo=UTC)


def test_a_setpoint_reads_back_at_the_agent_as_sent() -> None:
    cmd = SetpointCommand(
        dispatch_id="d1",
        asset_id="bess",
        gateway_id="gw",
        p_kw=-20.5,
        start_at=TS,
        end_at=TS + timedelta(minutes=5),
        ramp_kw_per_s=2.0,
    )
    got = agent.setpoint_from_pb(dispatch.setpoint(cmd).setpoint)
    assert (got.dispatch_id, got.asset_id, got.p_kw) == ("d1", "bess", -20.5)
    assert (got.start, got.end) == (TS, TS + timedelta(minutes=5))
    assert got.q_kvar is None and got.ramp_kw_per_s == 2.0


def test_a_release_carries_its_reason_code() -> None:
    cmd = ReleaseCommand(
        dispatch_id="d1", asset_id="bess", gateway_id="gw", reason=ReasonCode.LEASE_ENDED
    )
    msg = dispatch.release(cmd).release
    assert msg.reason == pb.REASON_CODE_LEASE_ENDED
    assert agent.release_from_pb(msg).reason is ReasonCode.LEASE_ENDED


def test_an_ack_becomes_the_workflow_signal_with_its_exact_time() -> None:
    raw = pb.DispatchAck(
        dispatch_id="d1",
        state=pb.ACK_STATE_APPLIED,
        reason=pb.REASON_CODE_UNSPECIFIED,
        detail="ok\x00",
        time=ts_to_pb(TS),
        applied_p_kw=12.0,
    )
    ack = dispatch.agent_ack(raw, "gw", TS + timedelta(hours=1))
    assert ack is not None and ack.at == TS and ack.state == "applied"
    assert ack.reason is None and ack.detail == "ok\ufffd" and ack.applied_p_kw == 12.0
    raw.ClearField("time")
    assert dispatch.agent_ack(raw, "gw", TS) is not None
    assert dispatch.agent_ack(pb.DispatchAck(dispatch_id="d1", state=42), "gw", TS) is None
    assert dispatch.agent_ack(pb.DispatchAck(state=pb.ACK_STATE_APPLIED), "gw", TS) is None


def test_the_answer_to_an_ack_names_it() -> None:
    raw = pb.DispatchAck(dispatch_id="d1", state=pb.ACK_STATE_FAILED, time=ts_to_pb(TS))
    got = dispatch.ack_received(raw, refused="why").dispatch_ack_received
    assert (got.dispatch_id, got.state, got.time, got.refused) == ("d1", raw.state, raw.time, "why")
