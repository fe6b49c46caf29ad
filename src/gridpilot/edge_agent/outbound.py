"""What goes up the stream, in order: acks first, then telemetry oldest first.

Acks leave the outbox and batches count as sent only after the write
succeeded; a batch leaves the buffer only on TelemetryAck (at-least-once).
"""

from __future__ import annotations

import asyncio

from gridpilot.schema.pb import agent_pb2 as pb

from . import convert
from .acks import Ack, AckOutbox
from .buffer import TelemetryBuffer
from .link import Commit


class AgentOutbound:
    def __init__(self, acks: AckOutbox, buffer: TelemetryBuffer) -> None:
        self.acks = acks
        self.buffer = buffer
        self.wakeup = asyncio.Event()
        self._sent_seq = 0  # highest batch_seq written on this session

    def start_session(self) -> None:
        self._sent_seq = 0

    def notify(self) -> None:
        self.wakeup.set()

    def next(self) -> tuple[pb.AgentMessage, Commit] | None:
        ack = self.acks.peek()
        if ack is not None:
            return convert.ack(ack), lambda: self._ack_written(ack)
        batch = self.buffer.next_after(self._sent_seq)
        if batch is not None:
            return convert.batch(batch), lambda: self._batch_written(batch.seq)
        return None

    def _ack_written(self, ack: Ack) -> None:
        if self.acks.peek() is ack:  # unless a full outbox dropped it meanwhile
            self.acks.pop()

    def _batch_written(self, seq: int) -> None:
        self._sent_seq = max(self._sent_seq, seq)
