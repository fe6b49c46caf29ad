"""Dispatch lifecycle: the one state machine every recorder goes through.

    submitted → sent → acked → active → complete
    ends: expired, failed, cancelled

``sent``: written onto the agent's stream. ``acked``: the agent validated and
accepted it. ``active``: applied at the device. ``complete``: its duration ran
out and the asset was released. ``expired``: not delivered/accepted/applied
before its deadline. ``failed``: rejected or errored, always with a reason.
``cancelled``: by an operator, or superseded by a newer dispatch.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import IllegalTransition


class DispatchState(StrEnum):
    SUBMITTED = "submitted"
    SENT = "sent"
    ACKED = "acked"
    ACTIVE = "active"
    COMPLETE = "complete"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class ReasonCode(StrEnum):
    """Why a dispatch left the happy path; the proto enum has the same names."""

    OUT_OF_LIMITS = "OUT_OF_LIMITS"
    UNKNOWN_ASSET = "UNKNOWN_ASSET"
    DEVICE_WRITE_FAILED = "DEVICE_WRITE_FAILED"
    DEVICE_UNREACHABLE = "DEVICE_UNREACHABLE"
    AGENT_OFFLINE = "AGENT_OFFLINE"
    DEADLINE_PASSED = "DEADLINE_PASSED"
    SUPERSEDED = "SUPERSEDED"
    CANCELLED_BY_OPERATOR = "CANCELLED_BY_OPERATOR"
    LINK_LOST_REVERTED = "LINK_LOST_REVERTED"
    INVALID_COMMAND = "INVALID_COMMAND"
    LEASE_ENDED = "LEASE_ENDED"
    PRIORITY_CONFLICT = "PRIORITY_CONFLICT"
    # The site's arbitration policy gives the asset to local control.
    LOCAL_CONTROL = "LOCAL_CONTROL"


S = DispatchState
TERMINAL = frozenset({S.COMPLETE, S.EXPIRED, S.FAILED, S.CANCELLED})
# The end states as stored (SQL ``state NOT IN …``, the console's script), in one order.
TERMINAL_VALUES: tuple[str, ...] = tuple(s.value for s in DispatchState if s in TERMINAL)
_ENDS = {S.EXPIRED, S.FAILED, S.CANCELLED}
ALLOWED: dict[DispatchState, frozenset[DispatchState]] = {
    S.SUBMITTED: frozenset({S.SENT, *_ENDS}),
    S.SENT: frozenset({S.ACKED, *_ENDS}),
    S.ACKED: frozenset({S.ACTIVE, *_ENDS}),
    S.ACTIVE: frozenset({S.COMPLETE, S.FAILED, S.CANCELLED}),
    S.COMPLETE: frozenset(),
    S.EXPIRED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
# An end state other than complete always says why.
NEEDS_REASON = frozenset({S.EXPIRED, S.FAILED, S.CANCELLED})


def can_transition(current: DispatchState | None, target: DispatchState) -> bool:
    if current is None:
        return target is S.SUBMITTED
    return target in ALLOWED[current]


def check_transition(
    current: DispatchState | None, target: DispatchState, reason: ReasonCode | None
) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(f"a dispatch cannot go from {current} to {target}")
    if target in NEEDS_REASON and reason is None:
        raise IllegalTransition(f"{target} needs a reason code")


def path_to(current: DispatchState, target: DispatchState) -> list[DispatchState]:
    """The forward states to record to reach ``target`` along the happy path
    (e.g. sent → active records acked first). Raises if it is not reachable."""
    order = [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.COMPLETE]
    if target in order and current in order and order.index(target) > order.index(current):
        return order[order.index(current) + 1 : order.index(target) + 1]
    check_transition(current, target, ReasonCode.INVALID_COMMAND)
    return [target]
