"""Telemetry ingest: a bounded queue in front of one COPY writer.

``put()`` waits while the queue is full, so a slow or absent database pushes
back through gRPC flow control to the agents instead of growing memory.
The writer drains batches, COPYs them into a staging table, moves them into
``telemetry`` dropping duplicates by ``(asset_id, ts)``, updates the latest
values and the gateway's watermark, commits, and only then acks each batch.
On a database error it retries the same batches with jittered backoff; the
process stays up and nothing is acked until it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import structlog
from psycopg.types.json import Jsonb

from gridpilot.core.telemetry import CORE_FIELDS, Sample

log = structlog.get_logger(__name__)

COLUMNS = ("asset_id", "ts", "received_at", *CORE_FIELDS, "state", "details")
COPY_TYPES = ["text", "timestamptz", "timestamptz", *["float8"] * len(CORE_FIELDS), "text", "jsonb"]
_COLS = ", ".join(COLUMNS)
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "asset_id")

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
    "(LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
MOVE_SQL = (
    f"INSERT INTO telemetry ({_COLS}) SELECT DISTINCT ON (asset_id, ts) {_COLS} "
    "FROM telemetry_stage ORDER BY asset_id, ts ON CONFLICT (asset_id, ts) DO NOTHING"
)
LATEST_SQL = (
    f"INSERT INTO telemetry_latest ({_COLS}) SELECT DISTINCT ON (asset_id) {_COLS} "
    "FROM telemetry_stage ORDER BY asset_id, ts DESC "
    f"ON CONFLICT (asset_id) DO UPDATE SET {_UPDATES} WHERE telemetry_latest.ts < EXCLUDED.ts"
)
WATERMARK_SQL = (
    "INSERT INTO ingest_watermarks (gateway_id, last_batch_seq) VALUES (%s, %s) "
    "ON CONFLICT (gateway_id) DO UPDATE SET updated_at = now(), "
    "last_batch_seq = GREATEST(ingest_watermarks.last_batch_seq, EXCLUDED.last_batch_seq)"
)

AckFn = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class IngestBatch:
    gateway_id: str
    batch_seq: int
    samples: list[Sample]
    ack: AckFn  # called once the batch is committed
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class PipelineStats:
    batches_committed: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    write_errors: int = 0
    db_available: bool = True
    last_error: str = ""


class TelemetryPipeline:
    def __init__(
        self,
        database_url: str,
        max_batches: int = 256,
        max_batches_per_commit: int = 64,
    ) -> None:
        self._url = database_url
        self._queue: asyncio.Queue[IngestBatch] = asyncio.Queue(maxsize=max_batches)
        self._per_commit = max_batches_per_commit
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.stats = PipelineStats()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def put(self, batch: IngestBatch) -> None:
        """Waits while the queue is full (backpressure)."""
        await self._queue.put(batch)

    async def run(self) -> None:
        """The writer loop; runs until cancelled."""
        try:
            while True:
                batches = [await self._queue.get()]
                while len(batches) < self._per_commit and not self._queue.empty():
                    batches.append(self._queue.get_nowait())
                await self._write_until_durable(batches)
                for b in batches:
                    try:
                        await b.ack()
                    except Exception as exc:  # the agent re-sends; dedup absorbs it
                        log.info("telemetry_ack_not_sent", gateway=b.gateway_id, error=str(exc))
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()

    async def _write_until_durable(self, batches: list[IngestBatch]) -> None:
        delay = 0.2
        while True:
            try:
                await self._write(batches)
                if not self.stats.db_available:
                    log.info("telemetry_db_recovered")
                self.stats.db_available = True
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self.stats.write_errors += 1
                self.stats.last_error = str(exc).strip().splitlines()[0] if str(exc) else "error"
                if self.stats.db_available:
                    log.warning("telemetry_db_unavailable", error=self.stats.last_error)
                self.stats.db_available = False
                await self._drop_connection()
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 10.0)

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
            await self._conn.execute(STAGE_DDL)
            await self._conn.commit()
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def _write(self, batches: list[IngestBatch]) -> None:
        conn = await self._connection()
        rows = 0
        async with conn.transaction():
            async with conn.cursor() as cur:
                async with cur.copy(
                    f"COPY telemetry_stage ({_COLS}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(COPY_TYPES)
                    for b in batches:
                        for s in b.samples:
                            await copy.write_row(
                                (
                                    s.asset_id,
                                    s.ts,
                                    b.received_at,
                                    *[getattr(s, c) for c in CORE_FIELDS],
                                    s.state,
                                    Jsonb(s.details),
                                )
                            )
                            rows += 1
                await cur.execute(MOVE_SQL)
                inserted = cur.rowcount
                await cur.execute(LATEST_SQL)
                marks: dict[str, int] = {}
                for b in batches:
                    marks[b.gateway_id] = max(marks.get(b.gateway_id, 0), b.batch_seq)
                for gateway_id, seq in marks.items():
                    await cur.execute(WATERMARK_SQL, (gateway_id, seq))
        self.stats.batches_committed += len(batches)
        self.stats.rows_written += max(inserted, 0)
        self.stats.rows_duplicate += rows - max(inserted, 0)
