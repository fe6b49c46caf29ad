"""Telemetry storage on both backends (plain PostgreSQL, TimescaleDB): the
(asset_id, ts) de-duplication holds also when an agent that was offline for a
day replays into chunks that were compressed meanwhile; the latest-value
table is unaffected; the hypertable's policies follow the settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from gp_testing import wait_for
from gp_testing.backends import PgServer
from sqlalchemy import text

from gridpilot.core.telemetry import Sample
from gridpilot.ingest.pipeline import IngestBatch, TelemetryPipeline
from gridpilot.ingest.queue import MemoryTelemetryQueue
from gridpilot.schema import db
from gridpilot.schema.rollups import drop_rollups
from gridpilot.schema.telemetry_ddl import TelemetryPolicy, create_telemetry_table

pytestmark = pytest.mark.integration

DAY_AGO = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def samples(first_s: int, n: int, asset: str) -> list[Sample]:
    return [
        Sample(asset, DAY_AGO + timedelta(seconds=first_s + i), p_kw=float(first_s + i))
        for i in range(n)
    ]


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


class Agent:
    """Batches of one gateway, acked through the pipeline."""

    def __init__(self, pipeline: TelemetryPipeline) -> None:
        self.pipeline = pipeline
        self.acked: list[int] = []

    async def send(self, seq: int, rows: list[Sample]) -> None:
        async def ack() -> None:
            self.acked.append(seq)

        done = len(self.acked)
        await self.pipeline.put(IngestBatch.of_samples("gw", seq, rows, ack, size=100 * len(rows)))
        await wait_for(lambda: len(self.acked) > done, timeout=60)


async def test_an_agent_offline_a_day_replays_into_compressed_chunks_and_each_sample_lands_once(
    database_url: str, pg_server: PgServer
) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    await asyncio.to_thread(db.maintain_partitions, database_url)
    pipeline = TelemetryPipeline(database_url, MemoryTelemetryQueue[IngestBatch](1 << 20))
    writer = asyncio.create_task(pipeline.run())
    agent = Agent(pipeline)
    try:
        # Two days ago, before the agent lost its link: 600 s of two assets.
        await agent.send(1, samples(0, 600, "bess") + samples(0, 600, "pv"))
        await agent.send(2, samples(600, 600, "bess"))
        if pg_server.timescaledb:
            compressed = query(
                database_url,
                "SELECT count(compress_chunk(c)) FROM show_chunks('telemetry', "
                "older_than => now() - interval '1 day') c",
            )
            assert compressed[0][0] >= 1
            assert query(
                database_url,
                "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
                "WHERE hypertable_name = 'telemetry'",
            ) == [(True,)]
        assert await asyncio.to_thread(
            query, database_url, "SELECT max(ts) FROM telemetry_latest WHERE asset_id = 'bess'"
        ) == [(DAY_AGO + timedelta(seconds=1199),)]

        # Back a day later: the batch whose ack was lost is replayed, then a
        # batch that repeats half of what is stored and adds the rest.
        await agent.send(2, samples(600, 600, "bess"))
        await agent.send(3, samples(900, 600, "bess") + samples(300, 600, "pv"))
        assert agent.acked == [1, 2, 2, 3]
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    per_asset = query(
        database_url,
        "SELECT asset_id, count(*), count(DISTINCT ts), min(p_kw), max(p_kw) "
        "FROM telemetry GROUP BY asset_id ORDER BY asset_id",
    )
    assert per_asset == [("bess", 1500, 1500, 0.0, 1499.0), ("pv", 900, 900, 0.0, 899.0)]
    assert query(database_url, "SELECT asset_id, ts FROM telemetry_latest ORDER BY 1") == [
        ("bess", DAY_AGO + timedelta(seconds=1499)),
        ("pv", DAY_AGO + timedelta(seconds=899)),
    ]
    assert pipeline.stats.rows_written == 2400
    assert pipeline.stats.rows_duplicate == 600 + 300 + 300


async def test_compression_and_retention_policies_follow_the_settings(
    database_url: str, pg_server: PgServer
) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    if not pg_server.timescaledb:
        # plain PostgreSQL: maintenance makes the coming days' partitions, no jobs
        assert await asyncio.to_thread(db.telemetry_backend, database_url) is None
        assert (
            await asyncio.to_thread(db.maintain_partitions, database_url, TelemetryPolicy())
        ) == []
        return
    jobs = (
        "SELECT proc_name, config->>'compress_after', config->>'drop_after' "
        "FROM timescaledb_information.jobs WHERE hypertable_name = 'telemetry' ORDER BY 1"
    )
    assert (await asyncio.to_thread(db.telemetry_backend, database_url) or "").startswith(
        "timescaledb 2."
    )
    assert query(database_url, jobs) == [
        ("policy_compression", "7 days", None),
        ("policy_retention", None, "365 days"),
    ]
    settings = query(
        database_url,
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = 'telemetry'::regclass",
    )
    assert settings == [("asset_id", "ts DESC")]
    change = db.maintain_partitions
    assert await asyncio.to_thread(change, database_url, TelemetryPolicy(7, 365)) == []
    assert await asyncio.to_thread(change, database_url, TelemetryPolicy(2, 0)) == [
        "compression=2 days",
        "retention=off",
    ]
    assert query(database_url, jobs) == [("policy_compression", "2 days", None)]


def plain_telemetry(url: str) -> None:
    """The telemetry table as a plain-PostgreSQL deployment made it, with rows."""
    engine = db.sync_engine(url)
    try:
        with engine.begin() as conn:
            drop_rollups(conn)
            conn.execute(text("DROP TABLE telemetry"))
            create_telemetry_table(conn, plain=True)
            conn.execute(
                text(
                    "INSERT INTO telemetry (asset_id, ts, p_kw) SELECT 'bess', "
                    "now() - make_interval(secs => s), s FROM generate_series(1, 5000) s"
                )
            )
    finally:
        engine.dispose()


async def test_a_plain_postgresql_deployment_moves_to_timescaledb_with_its_rows(
    database_url: str, pg_server: PgServer
) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    move = db.move_to_timescaledb
    if not pg_server.timescaledb:
        with pytest.raises(ValueError, match="shared_preload_libraries"):
            await asyncio.to_thread(move, database_url, TelemetryPolicy())
        assert await asyncio.to_thread(db.telemetry_backend, database_url) is None
        return
    await asyncio.to_thread(plain_telemetry, database_url)
    assert await asyncio.to_thread(db.telemetry_backend, database_url) is None
    assert await asyncio.to_thread(move, database_url, TelemetryPolicy(3, 30)) == 5000
    assert (await asyncio.to_thread(db.telemetry_backend, database_url) or "").startswith(
        "timescaledb"
    )
    assert query(database_url, "SELECT count(*), sum(p_kw) FROM telemetry") == [(5000, 12502500.0)]
    assert query(database_url, "SELECT to_regclass('telemetry_1h') IS NOT NULL") == [(True,)]
    assert query(
        database_url,
        "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name = 'telemetry'",
    ) == [(2,)]
    assert await asyncio.to_thread(move, database_url, TelemetryPolicy(3, 30)) == 0  # once
