"""Dispatch acks: what the agent tells the headend about each dispatch.

An ack is recorded in :class:`AckHistory` (the latest per dispatch, so a
redelivered Setpoint or Release gets the same answer again without touching
the device) and queued in :class:`AckOutbox` until it is written to the
stream, so acks made while the link is down go out after reconnecting.

Once written, an ack waits in :class:`UnconfirmedAcks` until the headend
answers ``DispatchAckReceived``; each new session writes what is still
unconfirmed again, in order (a stream that broke right after a write may
have lost it).

A local dispatch is announced by a :class:`LocalReport`, queued in the same
outbox ahead of its acks, and kept in :class:`PendingReports` until the
headend answers that it recorded it; each new session sends what is still
pending again, ahead of the unconfirmed acks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.ops import spans

from ..clock import Clock


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


@dataclass(frozen=True, slots=True)
class LocalReport:
    """A local dispatch, as the headend is told about it (proto LocalDispatch)."""

    dispatch_id: str
    asset_id: str
    p_kw: float
    start: datetime
    end: datetime
    actor: str
    channel: str


Outgoing = Ack | LocalReport


class AckOutbox:
    """Acks (and local reports) waiting to be written, oldest first; bounded,
    drops the oldest (counted)."""

    def __init__(self, max_acks: int = 10_000) -> None:
        self._queue: deque[Outgoing] = deque()
        self._max = max_acks
        self.dropped = 0

    def put(self, item: Outgoing) -> None:
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(item)

    def put_first(self, items: list[Outgoing]) -> None:
        """Queue ``items`` (in their order) ahead of everything else."""
        self._queue.extendleft(reversed(items))
        while len(self._queue) > self._max:
            self._queue.pop()
            self.dropped += 1

    def peek(self) -> Outgoing | None:
        return self._queue[0] if self._queue else None

    def pop(self) -> Outgoing:
        """Remove the oldest item, once it has been written."""
        return self._queue.popleft()

    def __contains__(self, item: object) -> bool:
        return item in self._queue

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
            # The agent's current span of this dispatch, when there is one.
            trace_context=spans.carrier_or(trace_context),
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


class ReportJournal(Protocol):
    """Where :class:`PendingReports` keeps its reports on disk
    (:class:`~.journal.ControlJournal`)."""

    def report_added(self, report: LocalReport) -> None: ...
    def report_done(self, dispatch_id: str) -> None: ...
    def reports(self) -> list[LocalReport]: ...


class PendingReports:
    """Local reports the headend has not confirmed yet (bounded: the oldest
    goes first, counted; its dispatch then stays unrecorded at the headend).
    With a journal they are kept on disk too, and read back at start."""

    def __init__(self, max_reports: int = 1000, journal: ReportJournal | None = None) -> None:
        self._pending: OrderedDict[str, LocalReport] = OrderedDict()
        self._max = max_reports
        self._journal = journal
        self.dropped = 0
        for report in journal.reports() if journal is not None else []:
            self._pending[report.dispatch_id] = report

    def add(self, report: LocalReport) -> None:
        self._pending[report.dispatch_id] = report
        if self._journal is not None:
            self._journal.report_added(report)
        while len(self._pending) > self._max:
            oldest, _ = self._pending.popitem(last=False)
            self.dropped += 1
            if self._journal is not None:
                self._journal.report_done(oldest)

    def recorded(self, dispatch_id: str) -> LocalReport | None:
        report = self._pending.pop(dispatch_id, None)
        if report is not None and self._journal is not None:
            self._journal.report_done(dispatch_id)
        return report

    def __iter__(self) -> Iterator[LocalReport]:
        return iter(list(self._pending.values()))

    def __len__(self) -> int:
        return len(self._pending)


AckKey = tuple[str, AckState, datetime]


class UnconfirmedAcks:
    """Acks written to the stream that the headend has not confirmed yet, in
    the order written (bounded: the oldest goes first, counted)."""

    def __init__(self, max_acks: int = 10_000) -> None:
        self._acks: OrderedDict[AckKey, Ack] = OrderedDict()
        self._max = max_acks
        self.dropped = 0

    def add(self, ack: Ack) -> None:
        self._acks[(ack.dispatch_id, ack.state, ack.time)] = ack
        while len(self._acks) > self._max:
            self._acks.popitem(last=False)
            self.dropped += 1

    def confirmed(self, dispatch_id: str, state: AckState, time: datetime) -> Ack | None:
        return self._acks.pop((dispatch_id, state, time), None)

    def __iter__(self) -> Iterator[Ack]:
        return iter(list(self._acks.values()))

    def __len__(self) -> int:
        return len(self._acks)


def resend_on_new_session(
    outbox: AckOutbox, reports: PendingReports, unconfirmed: UnconfirmedAcks
) -> None:
    """What a new session writes first: every unconfirmed local report, then
    every unconfirmed ack, each in its order (a report always before the acks
    of its dispatch), unless already waiting in the outbox."""
    items: list[Outgoing] = [r for r in reports if r not in outbox]
    items += [a for a in unconfirmed if a not in outbox]
    outbox.put_first(items)
