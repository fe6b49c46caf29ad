"""Dispatch acks: what the agent tells the headend about each dispatch.

An ack is recorded in :class:`AckHistory` (the latest per dispatch, so a
redelivered Setpoint or Release gets the same answer again without touching
the device) and queued in :class:`AckOutbox` until it is written to the
stream, so acks made while the link is down go out after reconnecting.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from gridpilot.core.lifecycle import ReasonCode

from .clock import Clock


class AckState(StrEnum):
    """The proto's AckState without its prefix."""

    ACCEPTED = "ACCEPTED"
    APPLIED = "APPLIED"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    RELEASED = "RELEASED"


@dataclass(frozen=True, slots=True)
class Ack:
    dispatch_id: str
    asset_id: str
    state: AckState
    time: datetime
    reason: ReasonCode | None = None
    detail: str = ""
    trace_context: Mapping[str, str] = field(default_factory=dict)
    applied_p_kw: float | None = None


class AckHistory:
    """The latest ack per dispatch_id, bounded (least recently updated goes first)."""

    def __init__(self, max_dispatches: int = 10_000) -> None:
        self._max = max_dispatches
        self._latest: OrderedDict[str, Ack] = OrderedDict()

    def record(self, ack: Ack) -> None:
        self._latest[ack.dispatch_id] = ack
        self._latest.move_to_end(ack.dispatch_id)
        while len(self._latest) > self._max:
            self._latest.popitem(last=False)

    def latest(self, dispatch_id: str) -> Ack | None:
        return self._latest.get(dispatch_id)


class AckOutbox:
    """Acks waiting to be written, oldest first; bounded, drops the oldest (counted)."""

    def __init__(self, max_acks: int = 10_000) -> None:
        self._queue: deque[Ack] = deque()
        self._max = max_acks
        self.dropped = 0

    def put(self, ack: Ack) -> None:
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(ack)

    def peek(self) -> Ack | None:
        return self._queue[0] if self._queue else None

    def pop(self) -> Ack:
        """Remove the oldest ack, once it has been written."""
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)


class AckRecorder:
    """Makes acks: records each as its dispatch's latest, then emits it."""

    def __init__(self, history: AckHistory, emit: Callable[[Ack], None], clock: Clock) -> None:
        self.history = history
        self._emit = emit
        self._clock = clock

    def send(
        self,
        dispatch_id: str,
        asset_id: str,
        state: AckState,
        reason: ReasonCode | None = None,
        detail: str = "",
        *,
        trace_context: Mapping[str, str] | None = None,
        applied_p_kw: float | None = None,
    ) -> Ack:
        ack = Ack(
            dispatch_id=dispatch_id,
            asset_id=asset_id,
            state=state,
            time=self._clock.now(),
            reason=reason,
            detail=detail,
            trace_context=dict(trace_context or {}),
            applied_p_kw=applied_p_kw,
        )
        self.history.record(ack)
        self._emit(ack)
        return ack

    def resend_latest(self, dispatch_id: str) -> bool:
        """A redelivered command: answer with the latest ack again (not re-recorded)."""
        previous = self.history.latest(dispatch_id)
        if previous is not None:
            self._emit(previous)
        return previous is not None

    def release_unknown(self, dispatch_id: str, asset_id: str, reason: ReasonCode | None) -> None:
        """A Release for a dispatch that is not running: idempotent. A known
        dispatch gets its latest ack again; an unknown one is recorded as
        RELEASED, so a late Setpoint with that id is never applied."""
        if not self.resend_latest(dispatch_id):
            self.send(
                dispatch_id,
                asset_id,
                AckState.RELEASED,
                reason or ReasonCode.CANCELLED_BY_OPERATOR,
                "not running on this agent; nothing to release",
            )
