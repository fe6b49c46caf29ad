"""Telemetry ingest: a byte-bounded queue in front of one COPY writer.

``put()`` waits while the queue is full, so a slow or absent database pushes
back through gRPC flow control to the agents instead of growing memory.
The writer drains batches and writes them in one transaction: binary COPY,
the latest values, the gateway's watermark, commit; only then it acks each
batch and releases its bytes in the queue. Each batch is validated and
encoded (:mod:`.copyrows`) inside the COPY, so the server digests one batch
while the next is encoded; the COPY itself only moves prepared bytes, and
the statements after it go in one round trip (pipeline mode).

Two ways into ``telemetry``, same result:

- *direct*: COPY straight into ``telemetry``, for batches newer than the
  gateway's committed watermark (fresh data cannot be a duplicate of a
  committed batch);
- *staged*: COPY into a temp table, then ``INSERT .. SELECT DISTINCT ..
  ON CONFLICT (asset_id, ts) DO NOTHING``, for replays, the first commit of
  a gateway, and whenever the direct COPY hits a duplicate key (that
  transaction is rolled back and redone staged). Duplicates are dropped
  without losing the rest of the batch.

A database error that retrying can fix (connection lost, server down or
shutting down, deadlock) is retried with jittered backoff, the same batches,
forever: the process stays up and nothing is acked until it is durable. Any
other database error (a row the database refuses) is narrowed down to its
batch, which is logged, counted and left unacked (the agent keeps it); the
rest is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import structlog

from gridpilot.core.telemetry import Sample
from gridpilot.ops import spans
from gridpilot.schema import tenancy
from gridpilot.schema.db import DATABASE_OR_NETWORK_DOWN

from .copyrows import (
    COLUMNS,
    COPY_TYPES,
    SIGNATURE,
    TRAILER,
    CopyRows,
    encode_samples,
    merge_latest,
)
from .histogram import LAG_BUCKETS, Histogram
from .queue import TelemetryQueue

log = structlog.get_logger(__name__)

__all__ = ["COLUMNS", "COPY_TYPES", "IngestBatch", "PipelineStats", "TelemetryPipeline"]

_COLS = ", ".join(COLUMNS)
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "asset_id")

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
    "(LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
COPY_DIRECT = f"COPY telemetry ({_COLS}) FROM STDIN (FORMAT BINARY)"
COPY_STAGE = f"COPY telemetry_stage ({_COLS}) FROM STDIN (FORMAT BINARY)"
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
Encode = Callable[[], CopyRows]


class IngestBatch:
    """One agent batch on its way to the table.

    ``encode`` validates the batch and returns its rows for binary COPY
    (:mod:`.copyrows`). The writer calls it once, the first time it needs the
    rows, while its COPY is open: the database digests one batch while the
    next is encoded, and the servicers only parse and queue, so the writer's
    round trips do not wait behind other streams' encoding. A retry reuses
    the rows; a batch whose ``encode`` raises is logged, counted as refused
    and never acked.
    """

    __slots__ = ("_encode", "_rows", "ack", "batch_seq", "gateway_id", "size", "unencodable")

    def __init__(
        self, gateway_id: str, batch_seq: int, encode: Encode, ack: AckFn, size: int = 0
    ) -> None:
        self.gateway_id = gateway_id
        self.batch_seq = batch_seq
        self.ack = ack  # called once the batch is committed
        self.size = size  # serialized bytes, as received: the queue's unit
        self.unencodable = False  # encode() raised: logged, never written nor acked
        self._encode: Encode | None = encode
        self._rows: CopyRows | None = None

    @property
    def rows(self) -> CopyRows:
        if self._rows is None:
            try:
                self._rows = self._encode() if self._encode is not None else CopyRows()
            except Exception:
                log.exception(
                    "telemetry_batch_unencodable", gateway=self.gateway_id, batch_seq=self.batch_seq
                )
                self.unencodable = True
                self._rows = CopyRows()
            self._encode = None  # the source (the decoded message) can go now
        return self._rows

    @classmethod
    def of_samples(
        cls,
        gateway_id: str,
        batch_seq: int,
        samples: Sequence[Sample],
        ack: AckFn,
        size: int = 0,
        received_at: datetime | None = None,
    ) -> IngestBatch:
        """A batch of samples that are already validated (no checks here)."""
        at = received_at or datetime.now(UTC)
        return cls(gateway_id, batch_seq, lambda: encode_samples(samples, at), ack, size)


@dataclass
class PipelineStats:
    batches_committed: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    commits: int = 0
    staged_commits: int = 0
    write_errors: int = 0  # failed write attempts (each retry counts)
    batches_refused: int = 0  # refused by the database: logged, never acked
    db_available: bool = True
    last_error: str = ""
    # Per committed batch: commit time minus its newest sample's device time.
    commit_lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))


class _Duplicate(Exception):
    """The direct COPY met a key that is already stored."""


class TelemetryPipeline:
    def __init__(
        self,
        database_url: str,
        queue: TelemetryQueue[IngestBatch],
        max_batches_per_commit: int = 256,
        max_bytes_per_commit: int = 1 * 1024 * 1024,
        trace_ratio: float = 0.0,
    ) -> None:
        self._url = database_url
        self._trace_ratio = trace_ratio  # share of commits with a telemetry.commit span
        self.queue = queue
        self._per_commit = max_batches_per_commit
        # Leave room in the queue while a commit is in flight (pipelining).
        self._bytes_per_commit = max(1, min(max_bytes_per_commit, queue.max_bytes // 2))
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._committed_seq: dict[str, int] = {}  # per gateway, as far as this writer knows
        self.stats = PipelineStats()

    @property
    def depth(self) -> int:
        return self.queue.depth

    async def put(self, batch: IngestBatch) -> None:
        """Waits while the queue is full (backpressure)."""
        await self.queue.put(batch)

    async def run(self) -> None:
        """The writer loop; runs until cancelled."""
        try:
            while True:
                batches = await self.queue.drain(self._per_commit, self._bytes_per_commit)
                written = await self._write_until_durable(batches)
                for b in written:
                    if b.unencodable:
                        self.stats.batches_refused += 1
                        continue
                    try:
                        await b.ack()
                    except Exception as exc:  # the agent re-sends; dedup absorbs it
                        log.info("telemetry_ack_not_sent", gateway=b.gateway_id, error=str(exc))
                await self.queue.done(batches)
        finally:
            await self._drop_connection()

    async def _write_until_durable(self, batches: list[IngestBatch]) -> list[IngestBatch]:
        """Write ``batches``; returns those that are durable (all but refused ones)."""
        delay = 0.2
        while True:
            try:
                await self._write(batches)
            except DATABASE_OR_NETWORK_DOWN as exc:  # a retry can fix these, not bad data
                self._unavailable(exc)
                await self._drop_connection()
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 10.0)
                continue
            except psycopg.Error as exc:
                return await self._isolate(batches, exc)
            if not self.stats.db_available:
                log.info("telemetry_db_recovered")
            self.stats.db_available = True
            return batches

    async def _isolate(self, batches: list[IngestBatch], exc: psycopg.Error) -> list[IngestBatch]:
        """The database refused a row: write the batches one by one to find it."""
        self.stats.write_errors += 1
        if len(batches) == 1:
            b = batches[0]
            self.stats.batches_refused += 1
            log.error(
                "telemetry_batch_refused",
                gateway=b.gateway_id,
                batch_seq=b.batch_seq,
                samples=b.rows.count,
                error=_first_line(exc),
            )
            return []
        written: list[IngestBatch] = []
        for b in batches:
            written += await self._write_until_durable([b])
        return written

    def _unavailable(self, exc: BaseException) -> None:
        self.stats.write_errors += 1
        self.stats.last_error = _first_line(exc)
        if self.stats.db_available:
            log.warning("telemetry_db_unavailable", error=self.stats.last_error)
        self.stats.db_available = False

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=5, options=tenancy.SYSTEM_OPTIONS
            )
            await self._conn.execute(STAGE_DDL)
            await self._conn.commit()
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    def _is_fresh(self, batches: Iterable[IngestBatch]) -> bool:
        """Every batch is newer than its gateway's committed watermark (as far
        as this writer knows; a gateway it has not committed yet is not)."""
        for b in batches:
            mark = self._committed_seq.get(b.gateway_id)
            if mark is None or b.batch_seq <= mark:
                return False
        return True

    async def _write(self, batches: list[IngestBatch]) -> None:
        if self._trace_ratio and random.random() < self._trace_ratio:
            with spans.span("telemetry.commit") as span:
                ms = await self._write_once(batches)
                span.set_attributes(
                    {
                        "gridpilot.telemetry.batches": len(batches),
                        "gridpilot.telemetry.samples": sum(b.rows.count for b in batches),
                        "gridpilot.telemetry.bytes": sum(b.size for b in batches),
                        "gridpilot.telemetry.commit_ms": ms,
                    }
                )
        else:
            await self._write_once(batches)

    async def _write_once(self, batches: list[IngestBatch]) -> float:
        """One transaction for ``batches``; returns how long it took, in ms."""
        conn = await self._connection()
        started = time.monotonic()
        staged = not self._is_fresh(batches)
        if not staged:
            try:
                await self._commit(conn, batches, staged=False)
            except _Duplicate:
                staged = True
        if staged:
            await self._commit(conn, batches, staged=True)
            self.stats.staged_commits += 1
        committed_us = time.time() * 1e6
        for b in batches:
            if b.rows.latest:
                newest_us = max(us for us, _ in b.rows.latest.values())
                self.stats.commit_lag.observe(max(committed_us - newest_us, 0.0) / 1e6)
        marks = self._marks(batches)
        for gateway_id, seq in marks.items():
            self._committed_seq[gateway_id] = max(seq, self._committed_seq.get(gateway_id, 0))
        self.stats.commits += 1
        self.stats.batches_committed += len(batches)
        ms = round((time.monotonic() - started) * 1000, 1)
        log.debug("telemetry_committed", batches=len(batches), staged=staged, ms=ms)
        return ms

    async def _commit(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        batches: list[IngestBatch],
        *,
        staged: bool,
    ) -> None:
        rows = 0
        try:
            async with conn.cursor() as cur:  # not autocommit: BEGIN goes first
                # Each batch is encoded (and validated) here, the first time its
                # rows are needed: the server digests one batch while the next
                # is being encoded.
                async with cur.copy(COPY_STAGE if staged else COPY_DIRECT) as copy:
                    await copy.write(SIGNATURE)
                    for b in batches:
                        if b.rows.count:
                            await copy.write(b.rows.payload)
                            rows += b.rows.count
                    await copy.write(TRAILER)
                if staged:
                    await cur.execute(MOVE_SQL)
                    inserted = max(cur.rowcount, 0)
                else:
                    inserted = rows
                    # The stage holds only the newest row per asset here.
                    latest = merge_latest(b.rows for b in batches)
                    async with cur.copy(COPY_STAGE) as copy:
                        await copy.write(b"".join((SIGNATURE, *latest, TRAILER)))
                # One round trip for the rest: latest values, watermarks (in
                # gateway order, so concurrent writers lock them alike), commit.
                async with conn.pipeline():
                    await cur.execute(LATEST_SQL)
                    for gateway_id, seq in sorted(self._marks(batches).items()):
                        await cur.execute(WATERMARK_SQL, (gateway_id, seq))
                    await conn.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a broken connection is dropped anyway
                await conn.rollback()
            if isinstance(exc, psycopg.errors.UniqueViolation) and not staged:
                raise _Duplicate() from None
            raise
        self.stats.rows_written += inserted
        self.stats.rows_duplicate += rows - inserted

    @staticmethod
    def _marks(batches: Iterable[IngestBatch]) -> dict[str, int]:
        marks: dict[str, int] = {}
        for b in batches:
            marks[b.gateway_id] = max(marks.get(b.gateway_id, 0), b.batch_seq)
        return marks


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
