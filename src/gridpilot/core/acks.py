"""What an agent says about a dispatch (its acks), and what each ack does to
the dispatch's lifecycle (:mod:`.lifecycle`).

The values are those recorded in workflow histories (``AgentAck.state``) and
in ``dispatch_late_acks``: they never change. The member names are the
proto's (``ACK_STATE_<NAME>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .lifecycle import DispatchState, ReasonCode


class AckState(StrEnum):
    ACCEPTED = "accepted"
    """Validated against the agent's own limits and accepted."""
    APPLIED = "applied"
    """Written to the device."""
    COMPLETED = "completed"
    """The lease ran out and the asset was returned to its default."""
    REJECTED = "rejected"
    """Refused before touching the device (the reason says why)."""
    FAILED = "failed"
    """Accepted, but the device write failed."""
    RELEASED = "released"
    """Released: cancelled, superseded, taken by local control, or the link was lost."""


# A release for one of these was a take-over, not a fault: the dispatch ends cancelled.
TAKEN_OVER = frozenset(
    {ReasonCode.CANCELLED_BY_OPERATOR, ReasonCode.SUPERSEDED, ReasonCode.LOCAL_CONTROL}
)


@dataclass(frozen=True, slots=True)
class AckEffect:
    """Where an ack takes its dispatch: along the happy path to ``state``
    (acked, active, complete), or to an end with ``reason``."""

    state: DispatchState
    reason: ReasonCode | None = None


def ack_effect(state: AckState, reason: ReasonCode | None) -> AckEffect:
    """The lifecycle state an ack of ``state`` (with the agent's ``reason``) asks for.

    accepted → acked, applied → active, completed → complete; rejected and
    failed → failed (``INVALID_COMMAND`` when the agent gave no reason);
    released → cancelled when taken over (:data:`TAKEN_OVER`), else failed
    (``LINK_LOST_REVERTED`` when the agent gave no reason).
    """
    if state is AckState.ACCEPTED:
        return AckEffect(DispatchState.ACKED)
    if state is AckState.APPLIED:
        return AckEffect(DispatchState.ACTIVE)
    if state is AckState.COMPLETED:
        return AckEffect(DispatchState.COMPLETE)
    if state in (AckState.REJECTED, AckState.FAILED):
        return AckEffect(DispatchState.FAILED, reason or ReasonCode.INVALID_COMMAND)
    reason = reason or ReasonCode.LINK_LOST_REVERTED
    ends = DispatchState.CANCELLED if reason in TAKEN_OVER else DispatchState.FAILED
    return AckEffect(ends, reason)
