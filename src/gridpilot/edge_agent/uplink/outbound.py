"""What goes up the stream, in order: acks first, then telemetry.

Telemetry has two lanes per session. The *backlog* is what the buffer held
when the session started (unacked from before: a link or headend outage, or
an agent restart); the *live* lane is every batch made since. Each lane goes
oldest first, and while both have batches they take turns, so a long replay
after a reconnect never holds back fresh data (and fresh data never stops
the replay).

Acks leave the outbox and batches count as sent only after the write
succeeded; a batch leaves the buffer only on TelemetryAck (at-least-once).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from gridpilot.wire import agent as wire
from gridpilot.wire.messages import AgentMessage

from ..control.acks import (
    Ack,
    AckOutbox,
    Outgoing,
    PendingReports,
    UnconfirmedAcks,
    resend_on_new_session,
)
from ..telemetry.buffer import StoredBatch, TelemetryBuffer
from .link import Commit


class AgentOutbound:
    def __init__(
        self,
        acks: AckOutbox,
        buffer: TelemetryBuffer,
        reports: PendingReports | None = None,
        unconfirmed: UnconfirmedAcks | None = None,
    ) -> None:
        self.acks = acks
        self.buffer = buffer
        self.reports = reports if reports is not None else PendingReports()
        self.unconfirmed = unconfirmed if unconfirmed is not None else UnconfirmedAcks()
        self.wakeup = asyncio.Event()
        self._backlog_end = 0  # batches up to this seq are the backlog of this session
        self._backlog_sent = 0  # highest backlog seq written on this session
        self._live_sent = 0  # highest live seq written on this session
        self._live_turn = True

    def start_session(self) -> None:
        resend_on_new_session(self.acks, self.reports, self.unconfirmed)
        self._backlog_end = self.buffer.last_seq
        self._backlog_sent = 0
        self._live_sent = self._backlog_end
        self._live_turn = True

    def notify(self) -> None:
        self.wakeup.set()

    def heartbeat(self, now: datetime) -> AgentMessage:
        return wire.heartbeat(now, self.buffer.stats())

    def next(self) -> tuple[AgentMessage, Commit] | None:
        ack = self.acks.peek()
        if ack is not None:
            if isinstance(ack, Ack):  # kept until the headend confirms it (which may
                self.unconfirmed.add(ack)  # come back before the write returns)
            return wire.outgoing(ack), lambda: self._ack_written(ack)
        batch = self._next_batch()
        if batch is None:
            return None
        return wire.stored_batch(batch.payload), lambda: self._batch_written(batch.seq)

    def _next_batch(self) -> StoredBatch | None:
        lanes = (self._next_live, self._next_backlog)
        for lane in lanes if self._live_turn else reversed(lanes):
            batch = lane()
            if batch is not None:
                return batch
        return None

    def _next_live(self) -> StoredBatch | None:
        return self.buffer.next_after(self._live_sent)

    def _next_backlog(self) -> StoredBatch | None:
        if self._backlog_sent >= self._backlog_end:
            return None
        batch = self.buffer.next_after(self._backlog_sent)
        if batch is None or batch.seq > self._backlog_end:
            self._backlog_sent = self._backlog_end  # the backlog is done
            return None
        return batch

    def _ack_written(self, ack: Outgoing) -> None:
        if self.acks.peek() is ack:  # unless a full outbox dropped it meanwhile
            self.acks.pop()

    def _batch_written(self, seq: int) -> None:
        if seq > self._backlog_end:
            self._live_sent = max(self._live_sent, seq)
            self._live_turn = False
        else:
            self._backlog_sent = max(self._backlog_sent, seq)
            self._live_turn = True
