"""The headend's side of a dispatch on the wire: the Setpoint and Release it
sends, the DispatchAcks it takes (and answers), the LocalDispatch reports it
confirms. The agent's side is :mod:`.agent`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from gridpilot.core.acks import AckState
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.workflows.models import AgentAck, ReleaseCommand, SetpointCommand

from .codes import ack_state_name, reason_from_pb, reason_known, reason_to_pb
from .text import clean_text, is_id
from .times import ts_from_pb, ts_problem, ts_to_pb

MAX_DETAIL_CHARS = 1000


def setpoint(
    cmd: SetpointCommand, trace_context: Mapping[str, str] | None = None
) -> pb.HeadendMessage:
    """``trace_context``: the dispatch's W3C trace context, which the agent's
    spans continue and its acks echo."""
    sp = pb.Setpoint(
        dispatch_id=cmd.dispatch_id,
        asset_id=cmd.asset_id,
        p_kw=cmd.p_kw,
        start=ts_to_pb(cmd.start_at),
        end=ts_to_pb(cmd.end_at),
        trace_context=dict(trace_context or {}),
    )
    if cmd.q_kvar is not None:
        sp.q_kvar = cmd.q_kvar
    if cmd.ramp_kw_per_s is not None:
        sp.ramp_kw_per_s = cmd.ramp_kw_per_s
    return pb.HeadendMessage(setpoint=sp)


def release(cmd: ReleaseCommand) -> pb.HeadendMessage:
    rel = pb.Release(
        dispatch_id=cmd.dispatch_id, asset_id=cmd.asset_id, reason=reason_to_pb(cmd.reason)
    )
    return pb.HeadendMessage(release=rel)


def ack_problem(raw: pb.DispatchAck) -> str | None:
    """Why a DispatchAck cannot be taken as it is (None: it can)."""
    if not is_id(raw.dispatch_id):
        return "dispatch_ack.dispatch_id is not a dispatch id"
    if not reason_known(raw.reason):
        return f"dispatch_ack.reason {raw.reason} is not a known reason code"
    if raw.HasField("time") and (why := ts_problem(raw.time)):
        return f"dispatch_ack.time {why}"
    return None


def agent_ack(raw: pb.DispatchAck, gateway_id: str, received_at: datetime) -> AgentAck | None:
    """The ack as its workflow's signal (None: a state this headend does not
    know, or no dispatch id). Check :func:`ack_problem` first."""
    state = ack_state_name(raw.state)
    if state is None or state not in AckState.__members__ or not raw.dispatch_id:
        return None
    return AgentAck(
        dispatch_id=raw.dispatch_id,
        state=AckState[state],
        at=ts_from_pb(raw.time) if raw.HasField("time") else received_at,
        reason=reason_from_pb(raw.reason),
        detail=clean_text(raw.detail, MAX_DETAIL_CHARS),
        asset_id=raw.asset_id,
        applied_p_kw=raw.applied_p_kw if raw.HasField("applied_p_kw") else None,
        gateway_id=gateway_id,
    )


def ack_received(raw: pb.DispatchAck, refused: str = "") -> pb.HeadendMessage:
    """The answer that stops the agent re-sending this ack (``refused``: why not taken)."""
    received = pb.DispatchAckReceived(
        dispatch_id=raw.dispatch_id, state=raw.state, time=raw.time, refused=refused
    )
    return pb.HeadendMessage(dispatch_ack_received=received)


def local_dispatch_recorded(dispatch_id: str, refused: str = "") -> pb.HeadendMessage:
    """The answer that stops the agent re-sending a local dispatch report."""
    recorded = pb.LocalDispatchRecorded(dispatch_id=dispatch_id, refused=refused)
    return pb.HeadendMessage(local_dispatch_recorded=recorded)
