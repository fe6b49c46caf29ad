"""What the agent writes next: acks first, then backlog and live telemetry taking turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent.control.acks import Ack, AckOutbox, AckState, LocalReport, UnconfirmedAcks
from gridpilot.edge_agent.telemetry.buffer import Batch
from gridpilot.edge_agent.telemetry.buffer_sqlite import MEMORY, SqliteTelemetryBuffer
from gridpilot.edge_agent.uplink.outbound import AgentOutbound

TS = datetime(2026, 1, 1, tzinfo=UTC)


def batch(seq: int) -> Batch:
    return Batch(seq, (Sample("a", TS, p_kw=float(seq)),))


def setup(*seqs: int) -> tuple[AgentOutbound, SqliteTelemetryBuffer, AckOutbox]:
    buf = SqliteTelemetryBuffer(MEMORY, max_bytes=10**6, max_age_s=3600)
    for s in seqs:
        buf.put(batch(s))
    acks = AckOutbox()
    return AgentOutbound(acks, buf), buf, acks


def written(out: AgentOutbound, n: int) -> list[str]:
    """Write up to ``n`` messages; 'b<seq>' for telemetry, 'ack:<id>' for acks."""
    got = []
    for _ in range(n):
        item = out.next()
        if item is None:
            break
        msg, commit = item
        commit()
        kind = msg.WhichOneof("body")
        got.append(
            f"b{msg.telemetry.batch_seq}"
            if kind == "telemetry"
            else f"ack:{msg.dispatch_ack.dispatch_id}"
        )
    return got


def test_live_batches_take_turns_with_the_backlog_after_a_reconnect() -> None:
    out, buf, _ = setup(1, 2, 3, 4, 5)  # unacked from before: the backlog
    out.start_session()
    assert written(out, 1) == ["b1"]
    buf.put(batch(6))
    buf.put(batch(7))
    assert written(out, 5) == ["b6", "b2", "b7", "b3", "b4"]
    buf.put(batch(8))
    assert written(out, 10) == ["b8", "b5"]  # each lane oldest first; then nothing left


def test_without_a_backlog_live_batches_go_in_order() -> None:
    out, buf, _ = setup()
    out.start_session()
    for s in (1, 2, 3):
        buf.put(batch(s))
    assert written(out, 10) == ["b1", "b2", "b3"]


def test_a_new_session_sends_everything_unacked_again_and_acks_go_first() -> None:
    out, buf, acks = setup(1, 2)
    out.start_session()
    assert written(out, 10) == ["b1", "b2"]
    buf.ack(1)
    buf.put(batch(3))
    acks.put(Ack("d1", "a", AckState.ACCEPTED, TS))
    out.start_session()  # the stream broke: 2 and 3 were never acked
    assert written(out, 10) == ["ack:d1", "b2", "b3"]


def test_heartbeat_reports_the_buffer() -> None:
    out, buf, _ = setup(1, 2)
    hb = out.heartbeat(TS).heartbeat
    assert (hb.buffered_batches, hb.dropped_batches) == (2, 0)
    assert hb.buffered_bytes == buf.stats().bytes > 0


def test_a_new_session_writes_unconfirmed_reports_then_unconfirmed_acks_in_order() -> None:
    out, _, acks = setup()
    report = LocalReport("loc-1", "a", 5.0, TS, TS + timedelta(hours=1), "opcua:op", "opcua")
    out.reports.add(report)
    first = Ack("d-1", "a", AckState.ACCEPTED, TS)
    second = Ack("d-1", "a", AckState.APPLIED, TS + timedelta(seconds=1))
    for item in (report, first, second):
        acks.put(item)
    out.start_session()
    assert [type(m).__name__ for m in _drain(out)] == ["LocalReport", "Ack", "Ack"]
    assert [a.state for a in out.unconfirmed] == [AckState.ACCEPTED, AckState.APPLIED]

    out.unconfirmed.confirmed("d-1", AckState.ACCEPTED, TS)
    later = Ack("d-2", "a", AckState.ACCEPTED, TS + timedelta(seconds=2))
    acks.put(later)  # made while the link was down: already waiting, not doubled
    out.start_session()
    assert _drain(out) == [report, second, later]  # the report is not confirmed yet either


def test_unconfirmed_acks_are_bounded_oldest_first() -> None:
    unconfirmed = UnconfirmedAcks(max_acks=2)
    for i in range(3):
        unconfirmed.add(Ack(f"d-{i}", "a", AckState.APPLIED, TS))
    assert [a.dispatch_id for a in unconfirmed] == ["d-1", "d-2"] and unconfirmed.dropped == 1


def _drain(out: AgentOutbound) -> list[object]:
    """What the outbox writes, in order, as if every write succeeded."""
    items = []
    while (peeked := out.acks.peek()) is not None:
        item = out.next()
        assert item is not None
        item[1]()
        items.append(peeked)
    return items
