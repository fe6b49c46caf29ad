"""The telemetry writer against a real PostgreSQL: direct COPY for fresh
batches, the staged path for replays and duplicates, and a batch the
database refuses is isolated without stopping the writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from gp_testing import wait_for

from gridpilot.core.telemetry import Sample
from gridpilot.ingest.copyrows import CopyRows
from gridpilot.ingest.pipeline import IngestBatch, TelemetryPipeline
from gridpilot.ingest.queue import MemoryTelemetryQueue
from gridpilot.schema import db

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def samples(first_s: int, n: int, asset: str = "a1", **kw: object) -> list[Sample]:
    return [
        Sample(asset, T0 + timedelta(seconds=first_s + i), p_kw=float(i), **kw) for i in range(n)
    ]  # type: ignore[arg-type]


class Acks:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def batch(self, seq: int, rows: list[Sample], gateway: str = "gw") -> IngestBatch:
        async def ack() -> None:
            self.acked.append(seq)

        return IngestBatch.of_samples(gateway, seq, rows, ack, size=100 * len(rows))


def rows(url: str) -> list[tuple[str, float]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT asset_id, extract(epoch FROM ts) FROM telemetry ORDER BY 1, 2"
        ).fetchall()


async def test_fresh_batches_go_direct_and_replays_and_duplicates_go_staged(
    database_url: str,
) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    await asyncio.to_thread(db.maintain_partitions, database_url)
    pipeline = TelemetryPipeline(database_url, MemoryTelemetryQueue[IngestBatch](1 << 20))
    writer = asyncio.create_task(pipeline.run())
    acks = Acks()
    try:
        await pipeline.put(acks.batch(1, samples(0, 10)))  # first of a gateway: staged
        await wait_for(lambda: acks.acked == [1])
        await pipeline.put(acks.batch(2, samples(10, 10)))  # fresh: direct
        await wait_for(lambda: acks.acked == [1, 2])
        assert pipeline.stats.staged_commits == 1 and pipeline.stats.commits == 2

        await pipeline.put(acks.batch(1, samples(0, 10)))  # a replay (lost ack): staged
        await wait_for(lambda: acks.acked[2:] == [1])
        assert pipeline.stats.staged_commits == 2
        # fresh seq, but it repeats stored samples: the direct COPY meets the
        # key, is rolled back and redone staged; the new samples are kept
        await pipeline.put(acks.batch(3, samples(15, 10)))
        await wait_for(lambda: acks.acked[2:] == [1, 3])
        assert pipeline.stats.staged_commits == 3
        assert len(rows(database_url)) == 25
        assert pipeline.stats.rows_written == 25
        assert pipeline.stats.rows_duplicate == 15
        with psycopg.connect(database_url) as conn:
            mark = conn.execute("SELECT last_batch_seq FROM ingest_watermarks").fetchone()
            latest = conn.execute("SELECT ts FROM telemetry_latest").fetchone()
        assert mark == (3,)
        assert latest is not None and latest[0] == T0 + timedelta(seconds=24)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_batch_the_database_refuses_is_isolated_and_never_acked(
    database_url: str,
) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    await asyncio.to_thread(db.maintain_partitions, database_url)
    queue = MemoryTelemetryQueue[IngestBatch](1 << 20)
    pipeline = TelemetryPipeline(database_url, queue)
    acks = Acks()
    # Queued before the writer starts, so all three go into one transaction.
    await pipeline.put(acks.batch(1, samples(0, 5)))
    await pipeline.put(acks.batch(2, samples(5, 5, state="bad\x00")))  # text cannot hold NUL
    await pipeline.put(acks.batch(3, samples(10, 5)))
    writer = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: sorted(acks.acked) == [1, 3])
        await wait_for(lambda: queue.bytes == 0)  # the refused batch's bytes are released too
        assert pipeline.stats.batches_refused == 1
        assert len(rows(database_url)) == 10
        assert not writer.done()
        await pipeline.put(acks.batch(4, samples(20, 5)))  # and it keeps writing
        await wait_for(lambda: 4 in acks.acked)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_batch_that_cannot_be_encoded_is_counted_never_acked_and_the_rest_written(
    database_url: str,
) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    await asyncio.to_thread(db.maintain_partitions, database_url)
    queue = MemoryTelemetryQueue[IngestBatch](1 << 20)
    pipeline = TelemetryPipeline(database_url, queue)
    acks = Acks()

    def broken() -> CopyRows:
        raise RuntimeError("a bug in the encoder")

    async def never() -> None:
        raise AssertionError("acked")

    await pipeline.put(acks.batch(1, samples(0, 5)))
    await pipeline.put(IngestBatch("gw", 2, broken, never, size=100))
    await pipeline.put(acks.batch(3, samples(10, 5)))
    writer = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: sorted(acks.acked) == [1, 3])
        await wait_for(lambda: queue.bytes == 0)
        assert pipeline.stats.batches_refused == 1
        assert len(rows(database_url)) == 10
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
