"""The telemetry buffer and the ack outbox: bounded, counted, acked away."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent.acks import Ack, AckHistory, AckOutbox, AckState
from gridpilot.edge_agent.buffer import Batch, MemoryTelemetryBuffer

TS = datetime(2026, 1, 1, tzinfo=UTC)


def batch(seq: int) -> Batch:
    return Batch(seq, (Sample("a", TS, p_kw=float(seq)),))


def seqs(batches: list[Batch]) -> list[int]:
    return [b.seq for b in batches]


def test_full_buffer_drops_the_oldest_and_counts_it() -> None:
    buf = MemoryTelemetryBuffer(max_batches=3)
    assert [buf.put(batch(s)) for s in (10, 11, 12)] == [0, 0, 0]
    assert buf.put(batch(13)) == 1
    assert buf.put(batch(14)) == 1
    assert seqs(buf.pending()) == [12, 13, 14]
    assert buf.dropped == 2 and len(buf) == 3


def test_ack_removes_exactly_that_batch() -> None:
    buf = MemoryTelemetryBuffer(max_batches=10)
    for s in (1, 2, 3):
        buf.put(batch(s))
    assert buf.ack(2) is True
    assert buf.ack(2) is False  # already gone: harmless
    assert buf.ack(99) is False
    assert seqs(buf.pending()) == [1, 3]


def test_ack_through_drops_everything_up_to_the_seq() -> None:
    buf = MemoryTelemetryBuffer(max_batches=10)
    for s in (5, 6, 7, 8):
        buf.put(batch(s))
    assert buf.ack_through(6) == 2
    assert seqs(buf.pending()) == [7, 8]
    assert buf.ack_through(1) == 0


def test_pending_after_and_next_after_walk_oldest_first() -> None:
    buf = MemoryTelemetryBuffer(max_batches=10)
    for s in (5, 6, 9):
        buf.put(batch(s))
    assert seqs(buf.pending(after=5)) == [6, 9]
    assert buf.next_after(0) == batch(5)
    assert buf.next_after(6) == batch(9)
    assert buf.next_after(9) is None


def test_batch_seq_must_increase() -> None:
    buf = MemoryTelemetryBuffer(max_batches=10)
    buf.put(batch(5))
    with pytest.raises(ValueError, match="not above"):
        buf.put(batch(5))
    with pytest.raises(ValueError):
        MemoryTelemetryBuffer(max_batches=0)


def ack(dispatch_id: str, state: AckState = AckState.ACCEPTED) -> Ack:
    return Ack(dispatch_id, "a", state, TS)


def test_ack_outbox_is_bounded_and_counts_drops() -> None:
    box = AckOutbox(max_acks=2)
    for d in ("d1", "d2", "d3"):
        box.put(ack(d))
    assert box.dropped == 1 and len(box) == 2
    first = box.peek()
    assert first is not None and first.dispatch_id == "d2"
    assert box.pop().dispatch_id == "d2"


def test_ack_history_keeps_the_latest_per_dispatch_bounded() -> None:
    history = AckHistory(max_dispatches=2)
    history.record(ack("d1"))
    history.record(ack("d1", AckState.APPLIED))
    history.record(ack("d2"))
    latest = history.latest("d1")
    assert latest is not None and latest.state is AckState.APPLIED
    history.record(ack("d3"))
    assert history.latest("d1") is None  # least recently updated goes first
    assert history.latest("d3") is not None
