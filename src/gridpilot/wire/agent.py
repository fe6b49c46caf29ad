"""The edge agent's side of the wire: protobuf <-> the agent's own types
(its commands, acks, local reports, buffered batches). The headend's side of
the same messages is :mod:`.dispatch` and :mod:`.telemetry`.

This module imports the edge agent's types; only the edge agent imports it,
as a module (``from gridpilot.wire import agent``), so the two can load in
either order.
"""

from __future__ import annotations

from datetime import datetime

from gridpilot.edge_agent.control.acks import Ack, AckKey, AckState, LocalReport, Outgoing
from gridpilot.edge_agent.control.commands import ReleaseCommand, SetpointCommand
from gridpilot.edge_agent.telemetry.buffer import Batch, BufferStats
from gridpilot.schema.pb import agent_pb2 as pb

from .codes import ack_state_name, ack_state_to_pb, reason_from_pb, reason_to_pb
from .telemetry import batch_samples, telemetry_batch
from .times import optional_ts, ts_from_pb


def heartbeat(now: datetime, buffer: BufferStats | None = None) -> pb.AgentMessage:
    msg = pb.Heartbeat(time=now)
    if buffer is not None:
        msg.dropped_batches = buffer.dropped_batches
        msg.dropped_samples = buffer.dropped_samples
        msg.buffered_batches = buffer.batches
        msg.buffered_bytes = buffer.bytes
    return pb.AgentMessage(heartbeat=msg)


def batch(b: Batch) -> pb.AgentMessage:
    return pb.AgentMessage(telemetry=telemetry_batch(b.seq, b.samples))


def stored_batch(payload: bytes) -> pb.AgentMessage:
    """The message for a batch the buffer stored (its serialized
    TelemetryBatch), without turning its samples into ours and back."""
    msg = pb.AgentMessage()
    msg.telemetry.MergeFromString(payload)
    return msg


def batch_to_bytes(b: Batch) -> bytes:
    """A batch as the buffer stores it: a serialized TelemetryBatch."""
    return telemetry_batch(b.seq, b.samples).SerializeToString()


def batch_from_bytes(payload: bytes) -> Batch:
    """The inverse of :func:`batch_to_bytes` (details numbers come back as floats)."""
    msg = pb.TelemetryBatch.FromString(payload)
    return Batch(msg.batch_seq, batch_samples(msg))


def outgoing(item: Outgoing) -> pb.AgentMessage:
    return ack(item) if isinstance(item, Ack) else local_dispatch(item)


def local_dispatch(r: LocalReport) -> pb.AgentMessage:
    return pb.AgentMessage(
        local_dispatch=pb.LocalDispatch(
            dispatch_id=r.dispatch_id,
            asset_id=r.asset_id,
            p_kw=r.p_kw,
            start=r.start,
            end=r.end,
            actor=r.actor,
            channel=r.channel,
        )
    )


def ack(a: Ack) -> pb.AgentMessage:
    msg = pb.DispatchAck(
        dispatch_id=a.dispatch_id,
        state=ack_state_to_pb(a.state),
        reason=reason_to_pb(a.reason),
        detail=a.detail,
        time=a.time,
        asset_id=a.asset_id,
        trace_context=dict(a.trace_context),
    )
    if a.applied_p_kw is not None:
        msg.applied_p_kw = a.applied_p_kw
    return pb.AgentMessage(dispatch_ack=msg)


def ack_key_from_pb(received: pb.DispatchAckReceived) -> AckKey | None:
    """Which ack the headend answered (None: a state this agent does not know)."""
    name = ack_state_name(received.state)
    if name is None or name not in AckState.__members__:
        return None
    return received.dispatch_id, AckState[name], ts_from_pb(received.time)


def setpoint_from_pb(msg: pb.Setpoint) -> SetpointCommand:
    return SetpointCommand(
        dispatch_id=msg.dispatch_id,
        asset_id=msg.asset_id,
        p_kw=msg.p_kw,
        start=optional_ts(msg, "start"),
        end=optional_ts(msg, "end"),
        q_kvar=msg.q_kvar if msg.HasField("q_kvar") else None,
        ramp_kw_per_s=msg.ramp_kw_per_s if msg.HasField("ramp_kw_per_s") else None,
        trace_context=dict(msg.trace_context),
    )


def release_from_pb(msg: pb.Release) -> ReleaseCommand:
    return ReleaseCommand(msg.dispatch_id, msg.asset_id, reason_from_pb(msg.reason))
