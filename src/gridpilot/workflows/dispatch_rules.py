"""DispatchWorkflow's pure parts: how long it waits in each state, the
commands and requests it builds from its input, how its result reads, and
how a delivery refused as superseded names the winner. No Temporal calls
here (``dispatch.py`` makes them), so these run and test without a worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.exceptions import ActivityError, ApplicationError

from gridpilot.core.lifecycle import DispatchState, ReasonCode

from .constants import ERROR_SUPERSEDED
from .models import (
    CancelRequest,
    ClaimRequest,
    DispatchInput,
    DispatchResult,
    ReleaseCommand,
    SetpointCommand,
    TransitionRecord,
)

S = DispatchState
# An undelivered dispatch resolves its route again this often, until deliver_by.
ROUTE_RETRY = timedelta(seconds=2)
# How long after end_at the agent may still confirm the end itself.
END_GRACE = timedelta(seconds=10)
# A scheduled dispatch is delivered this long before its start.
START_LEAD = timedelta(seconds=30)


def wait_deadline(inp: DispatchInput, state: DispatchState | None, since: datetime) -> datetime:
    """Until when a dispatch in ``state`` (entered at ``since``) waits for the
    agent's next word: an ack within the ack timeout of its sending, an apply
    within it of its start (or its ack, if later), never past its end; else its
    end and the grace for the agent's own word."""
    ack_window = timedelta(seconds=inp.ack_timeout_s)
    if state is S.SENT:
        return min(since + ack_window, inp.end_at)
    if state is S.ACKED:
        return min(max(inp.start_at, since) + ack_window, inp.end_at)
    return inp.end_at + END_GRACE


def result_of(
    inp: DispatchInput, state: DispatchState, last: TransitionRecord, applied_p_kw: float | None
) -> DispatchResult:
    """The result as of the last transition recorded."""
    return DispatchResult(
        dispatch_id=inp.dispatch_id,
        state=state,
        reason=last.reason,
        detail=last.detail,
        applied_p_kw=applied_p_kw,
    )


def claim_request(inp: DispatchInput) -> ClaimRequest:
    assert inp.asset_id is not None
    return ClaimRequest(
        dispatch_id=inp.dispatch_id,
        asset_id=inp.asset_id,
        priority=inp.priority,
        start_at=inp.start_at,
        end_at=inp.end_at,
        submit_seq=inp.submit_seq,
    )


def supersede_request(winner: str) -> CancelRequest:
    """The cancel a claim sends to each dispatch it supersedes."""
    return CancelRequest(
        reason=ReasonCode.SUPERSEDED,
        actor=f"dispatch {winner}",
        detail=f"superseded by {winner}",
        superseded_by=winner,
    )


def superseded_by(err: ActivityError) -> str | None:
    """The winner's id, if the delivery was refused because this one was superseded."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == ERROR_SUPERSEDED and cause.details:
        return str(cause.details[0])
    return None


def setpoint_command(inp: DispatchInput, gateway_id: str) -> SetpointCommand:
    assert inp.asset_id is not None
    return SetpointCommand(
        dispatch_id=inp.dispatch_id,
        asset_id=inp.asset_id,
        gateway_id=gateway_id,
        p_kw=inp.p_kw,
        q_kvar=inp.q_kvar,
        start_at=inp.start_at,
        end_at=inp.end_at,
        ramp_kw_per_s=inp.ramp_kw_per_s,
    )


def release_command(inp: DispatchInput, gateway_id: str, reason: ReasonCode) -> ReleaseCommand:
    assert inp.asset_id is not None
    return ReleaseCommand(
        dispatch_id=inp.dispatch_id,
        asset_id=inp.asset_id,
        gateway_id=gateway_id,
        reason=reason,
    )
