"""Protobuf <-> the agent's own types. Protobuf stops here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from gridpilot import __version__
from gridpilot.core.assets import Asset, AssetType
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.core.telemetry import CORE_FIELDS, Sample
from gridpilot.schema.pb import agent_pb2 as pb

from .control.acks import Ack, AckKey, AckState, LocalReport, Outgoing
from .control.commands import ReleaseCommand, SetpointCommand
from .telemetry.buffer import Batch, BufferStats

_ASSET_TYPES = {
    AssetType.BESS: pb.ASSET_TYPE_BESS,
    AssetType.PV: pb.ASSET_TYPE_PV,
    AssetType.WIND: pb.ASSET_TYPE_WIND,
    AssetType.EV_CHARGER: pb.ASSET_TYPE_EV_CHARGER,
}


def reason_to_pb(reason: ReasonCode | None) -> str:
    """The proto enum's name (protobuf takes names as well as numbers)."""
    return f"REASON_CODE_{reason or 'UNSPECIFIED'}"


def ack_key_from_pb(received: pb.DispatchAckReceived) -> AckKey | None:
    """Which ack the headend answered (None: a state this agent does not know)."""
    name = pb.AckState.Name(received.state).removeprefix("ACK_STATE_")
    if name not in AckState.__members__:
        return None
    return received.dispatch_id, AckState(name), received.time.ToDatetime(tzinfo=UTC)


def reason_from_pb(value: int) -> ReasonCode | None:
    """None for UNSPECIFIED and for codes newer than this agent."""
    try:
        name = pb.ReasonCode.Name(value).removeprefix("REASON_CODE_")
    except ValueError:
        return None
    return ReasonCode.__members__.get(name)


def hello(
    gateway_id: str, site_id: str, site_name: str, assets: Iterable[Asset]
) -> pb.AgentMessage:
    infos = [
        pb.AssetInfo(
            asset_id=a.asset_id,
            name=a.name,
            asset_type=_ASSET_TYPES[a.asset_type],
            p_min_kw=a.limits.p_min_kw,
            p_max_kw=a.limits.p_max_kw,
            capacity_kwh=a.capacity_kwh,
            default_p_kw=a.default_p_kw,
        )
        for a in assets
    ]
    return pb.AgentMessage(
        hello=pb.Hello(
            gateway_id=gateway_id,
            site_id=site_id,
            site_name=site_name,
            assets=infos,
            agent_version=__version__,
        )
    )


def heartbeat(now: datetime, buffer: BufferStats | None = None) -> pb.AgentMessage:
    msg = pb.Heartbeat(time=now)
    if buffer is not None:
        msg.dropped_batches = buffer.dropped_batches
        msg.dropped_samples = buffer.dropped_samples
        msg.buffered_batches = buffer.batches
        msg.buffered_bytes = buffer.bytes
    return pb.AgentMessage(heartbeat=msg)


def sample_to_pb(sample: Sample) -> pb.TelemetrySample:
    msg = pb.TelemetrySample(asset_id=sample.asset_id, ts=sample.ts)
    for name in CORE_FIELDS:
        value = getattr(sample, name)
        if value is not None:
            setattr(msg, name, value)
    if sample.state is not None:
        msg.state = sample.state
    if sample.details:
        msg.details.update({k: _struct_value(v) for k, v in sample.details.items()})
    return msg


def batch(b: Batch) -> pb.AgentMessage:
    return pb.AgentMessage(telemetry=telemetry_batch(b))


def telemetry_batch(b: Batch) -> pb.TelemetryBatch:
    return pb.TelemetryBatch(batch_seq=b.seq, samples=[sample_to_pb(s) for s in b.samples])


def stored_batch(payload: bytes) -> pb.AgentMessage:
    """The message for a batch the buffer stored (its serialized
    TelemetryBatch), without turning its samples into ours and back."""
    msg = pb.AgentMessage()
    msg.telemetry.MergeFromString(payload)
    return msg


def sample_from_pb(msg: pb.TelemetrySample) -> Sample:
    """The inverse of :func:`sample_to_pb` (details numbers come back as floats)."""
    values = {name: getattr(msg, name) for name in CORE_FIELDS if msg.HasField(name)}
    return Sample(
        asset_id=msg.asset_id,
        ts=msg.ts.ToDatetime(tzinfo=UTC),
        state=msg.state if msg.HasField("state") else None,
        details=json_format.MessageToDict(msg.details) if msg.HasField("details") else {},
        **values,
    )


def batch_from_pb(msg: pb.TelemetryBatch) -> Batch:
    return Batch(msg.batch_seq, tuple(sample_from_pb(s) for s in msg.samples))


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
        state=f"ACK_STATE_{a.state}",
        reason=reason_to_pb(a.reason),
        detail=a.detail,
        time=a.time,
        asset_id=a.asset_id,
        trace_context=dict(a.trace_context),
    )
    if a.applied_p_kw is not None:
        msg.applied_p_kw = a.applied_p_kw
    return pb.AgentMessage(dispatch_ack=msg)


def setpoint_from_pb(msg: pb.Setpoint) -> SetpointCommand:
    return SetpointCommand(
        dispatch_id=msg.dispatch_id,
        asset_id=msg.asset_id,
        p_kw=msg.p_kw,
        start=_time(msg, "start"),
        end=_time(msg, "end"),
        q_kvar=msg.q_kvar if msg.HasField("q_kvar") else None,
        ramp_kw_per_s=msg.ramp_kw_per_s if msg.HasField("ramp_kw_per_s") else None,
        trace_context=dict(msg.trace_context),
    )


def release_from_pb(msg: pb.Release) -> ReleaseCommand:
    return ReleaseCommand(msg.dispatch_id, msg.asset_id, reason_from_pb(msg.reason))


def _time(msg: Any, name: str) -> datetime | None:
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    return datetime.fromtimestamp(ts.seconds, UTC).replace(microsecond=ts.nanos // 1000)


def _struct_value(value: Any) -> Any:
    """Struct holds JSON values only; anything else travels as text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _struct_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_struct_value(v) for v in value]
    return str(value)
