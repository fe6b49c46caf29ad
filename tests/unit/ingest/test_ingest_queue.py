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


def test_decoded_batches_take_at_most_6x_their_wire_size() -> None:
    """The figure behind the memory bound in docs/guarantees.md: the queue
    counts wire bytes; what it holds in memory is the decoded samples."""
    import tracemalloc
    from datetime import UTC, datetime, timedelta

    from gridpilot.ingest.convert import sample_from_pb
    from gridpilot.schema.pb import agent_pb2 as pb

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    batch = pb.TelemetryBatch(batch_seq=1)
    for i in range(2000):  # like a BESS sample: the core fields, a state, two details
        s = batch.samples.add(asset_id=f"site-7-bess-{i % 50}", state="ok")
        for j, name in enumerate(("p_kw", "q_kvar", "soc_pct", "available_charge_kw")):
            setattr(s, name, 100.0 + i + j)
        s.voltage_v, s.frequency_hz = 400.0 + i / 7, 50.0 + i / 1e4
        s.ts.FromDatetime(t0 + timedelta(milliseconds=100 * i))
        s.details.update({"soh_pct": 98.0, "temperature_c": 20.0 + i / 100})
    wire = pb.TelemetryBatch.FromString(batch.SerializeToString())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [sample_from_pb(s) for s in wire.samples]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(held) == 2000
    print(f"decoded {used / batch.ByteSize():.1f}x the wire size, {used / 2000:.0f} B per sample")
    assert used < 6 * batch.ByteSize(), used / batch.ByteSize()
