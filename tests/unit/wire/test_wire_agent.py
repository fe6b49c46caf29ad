"""The agent's side of the wire: its commands, acks and samples <-> protobuf."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent.control.acks import Ack, AckState
from gridpilot.edge_agent.telemetry.buffer import Batch
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire import agent, codes, telemetry

TS = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_sample_sets_only_present_fields_and_keeps_details() -> None:
    msg = telemetry.sample_to_pb(
        Sample("pv", TS, p_kw=12.5, state="producing", details={"irradiance_w_m2": 800, "ok": True})
    )
    assert msg.asset_id == "pv" and msg.ts.ToDatetime(tzinfo=UTC) == TS
    assert msg.HasField("p_kw") and msg.p_kw == 12.5
    assert not msg.HasField("soc_pct") and not msg.HasField("q_kvar")
    assert msg.details["irradiance_w_m2"] == 800 and msg.details["ok"] is True


def test_ack_maps_state_reason_and_applied_power() -> None:
    ack = Ack("d1", "bess", AckState.APPLIED, TS, applied_p_kw=50, trace_context={"k": "v"})
    msg = agent.ack(ack).dispatch_ack
    assert msg.state == pb.ACK_STATE_APPLIED and msg.reason == pb.REASON_CODE_UNSPECIFIED
    assert msg.applied_p_kw == 50 and dict(msg.trace_context) == {"k": "v"}
    rejected = agent.ack(Ack("d2", "bess", AckState.REJECTED, TS, ReasonCode.OUT_OF_LIMITS))
    assert rejected.dispatch_ack.reason == pb.REASON_CODE_OUT_OF_LIMITS
    assert not rejected.dispatch_ack.HasField("applied_p_kw")


def test_every_core_reason_code_exists_in_the_proto() -> None:
    for reason in ReasonCode:
        assert codes.reason_from_pb(codes.reason_to_pb(reason)) is reason
    assert codes.reason_from_pb(pb.REASON_CODE_UNSPECIFIED) is None
    assert codes.reason_from_pb(999) is None  # newer than this agent


def test_setpoint_without_start_or_end_converts_to_none() -> None:
    end = TS + timedelta(minutes=5)
    cmd = agent.setpoint_from_pb(pb.Setpoint(dispatch_id="d", asset_id="a", p_kw=1, end=end))
    assert cmd.start is None and cmd.end == end and cmd.q_kvar is None
    assert agent.setpoint_from_pb(pb.Setpoint(dispatch_id="d")).end is None


def test_a_batch_reads_back_from_the_buffer_bytes() -> None:
    b = Batch(7, (Sample("pv", TS, p_kw=1.5, details={"n": 2, "bad": float("nan")}),))
    back = agent.batch_from_bytes(agent.batch_to_bytes(b))
    assert back.seq == 7 and back.samples[0].details == {"n": 2.0, "bad": None}


def test_an_ack_state_newer_than_the_agent_is_not_a_key() -> None:
    received = pb.DispatchAckReceived(dispatch_id="d", state=99, time=TS)
    assert agent.ack_key_from_pb(received) is None
    received.state = pb.ACK_STATE_APPLIED
    assert agent.ack_key_from_pb(received) == ("d", AckState.APPLIED, TS)
