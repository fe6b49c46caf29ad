"""The ingest queue: bounded in bytes until the writer is done, FIFO, never stuck."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from gridpilot.ingest.queue import MemoryTelemetryQueue


@dataclass
class Item:
    name: str
    size: int


async def test_put_waits_while_full_and_bytes_stay_charged_until_done() -> None:
    q = MemoryTelemetryQueue[Item](max_bytes=100)
    await q.put(Item("a", 60))
    blocked = asyncio.create_task(q.put(Item("b", 50)))
    await asyncio.sleep(0.01)
    assert not blocked.done() and q.bytes == 60

    drained = await q.drain(max_items=10, max_bytes=1000)
    assert [i.name for i in drained] == ["a"]
    await asyncio.sleep(0.01)
    assert not blocked.done()  # drained is not durable yet: still charged

    await q.done(drained)
    await asyncio.wait_for(blocked, 1)
    assert q.bytes == 50 and q.depth == 1


async def test_drain_takes_the_oldest_up_to_the_limits_but_always_one() -> None:
    q = MemoryTelemetryQueue[Item](max_bytes=10_000)
    for i, size in enumerate([500, 300, 300, 300]):
        await q.put(Item(str(i), size))
    assert [i.name for i in await q.drain(max_items=10, max_bytes=100)] == ["0"]  # alone
    assert [i.name for i in await q.drain(max_items=10, max_bytes=600)] == ["1", "2"]
    assert [i.name for i in await q.drain(max_items=1, max_bytes=10_000)] == ["3"]


async def test_an_item_bigger_than_the_bound_goes_in_alone() -> None:
    q = MemoryTelemetryQueue[Item](max_bytes=100)
    await asyncio.wait_for(q.put(Item("huge", 500)), 1)
    small = asyncio.create_task(q.put(Item("small", 1)))
    await asyncio.sleep(0.01)
    assert not small.done()
    await q.done(await q.drain(10, 10_000))
    await asyncio.wait_for(small, 1)


async def test_waiting_putters_are_served_in_arrival_order() -> None:
    q = MemoryTelemetryQueue[Item](max_bytes=100)
    await q.put(Item("first", 100))
    big = asyncio.create_task(q.put(Item("big", 90)))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(q.put(Item("small", 5)))  # would fit sooner: must not overtake
    await asyncio.sleep(0.01)
    await q.done(await q.drain(10, 10_000))
    await asyncio.wait_for(asyncio.gather(big, small), 1)
    assert [i.name for i in await q.drain(10, 10_000)] == ["big", "small"]


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryTelemetryQueue[Item](max_bytes=0)


def test_a_queued_batch_holds_under_4_5x_its_wire_size_and_its_rows_under_1_5x() -> None:
    """The figures behind the memory bound in docs/guarantees.md: the queue
    counts wire bytes; what it holds is the parsed message until the writer
    encodes it, then the encoded rows. (upb allocates outside Python's
    allocator, so the message is measured by RSS.)"""
    import gc
    import os
    from datetime import UTC, datetime, timedelta

    from gridpilot.ingest.copyrows import encode_batch
    from gridpilot.schema.pb import agent_pb2 as pb

    def rss() -> int:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    batch = pb.TelemetryBatch(batch_seq=1)
    for i in range(2000):  # like a BESS sample: the core fields, a state, two details
        s = batch.samples.add(asset_id=f"site-7-bess-{i % 50}", state="ok")
        for j, name in enumerate(("p_kw", "q_kvar", "soc_pct", "available_charge_kw")):
            setattr(s, name, 100.0 + i + j)
        s.voltage_v, s.frequency_hz = 400.0 + i / 7, 50.0 + i / 1e4
        s.ts.FromDatetime(t0 + timedelta(milliseconds=100 * i))
        s.details.update({"soh_pct": 98.0, "temperature_c": 20.0 + i / 100})
    wire = pb.AgentMessage(telemetry=batch).SerializeToString()
    gc.collect()
    before = rss()
    held = [pb.AgentMessage.FromString(wire) for _ in range(40)]
    parsed = (rss() - before) / len(held) / len(wire)
    known = frozenset(f"site-7-bess-{i}" for i in range(50))
    now = t0 + timedelta(days=1)
    encoded = encode_batch(held[0].telemetry.samples, known, now, now, timedelta(minutes=5))
    assert encoded.rows.count == 2000
    rows = encoded.rows.nbytes / len(wire)
    print(f"parsed {parsed:.1f}x the wire size, encoded rows {rows:.2f}x")
    assert parsed < 4.5 and rows < 1.5, (parsed, rows)
