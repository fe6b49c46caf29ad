"""The telemetry buffer on disk: one SQLite file in WAL mode.

Each batch is one row holding its serialized ``TelemetryBatch``, handed to
the uplink as those bytes (:class:`~.buffer.StoredBatch`); every put,
drop and ack is its own transaction with ``synchronous=FULL``, so once
``put()`` returns the batch survives a kill -9 of the agent and a power cut.
Cumulative counters (stored, dropped, the last batch_seq) live in the same
file and are updated in the same transactions, so they survive restarts too.

One agent per file: an exclusive ``flock`` on ``<file>.lock`` refuses a
second agent (the kernel drops it when the holder dies, even by kill -9).
The size bound counts serialized batch bytes; the file itself is larger by
SQLite's page overhead and keeps its high-water size (freed pages are reused).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import structlog

from gridpilot.wire import agent as wire

from .buffer import Batch, BufferStats, DropPolicy, StoredBatch

log = structlog.get_logger(__name__)

MEMORY = ":memory:"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches ("
    " seq INTEGER PRIMARY KEY, created REAL NOT NULL,"
    " samples INTEGER NOT NULL, bytes INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS batches_created ON batches (created)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
COUNTERS = ("last_seq", "stored_batches", "stored_samples", "dropped_batches", "dropped_samples")


class BufferLocked(Exception):
    """Another agent holds this buffer file."""


class SqliteTelemetryBuffer:
    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int,
        max_age_s: float,
        policy: DropPolicy = DropPolicy.DROP_OLDEST,
        now: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes < 1 or max_age_s <= 0:
            raise ValueError("max_bytes and max_age_s must be positive")
        self.path = str(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.policy = DropPolicy(policy)
        self._now = now
        self._lock: IO[str] | None = None
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._lock = _take_lock(Path(self.path + ".lock"))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            for ddl in SCHEMA:
                self._db.execute(ddl)
            self._db.executemany(
                "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)",
                [(n,) for n in COUNTERS],
            )
        except Exception:
            self._release_lock()
            raise
        self._counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM batches"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)

    # ----------------------------------------------------------- protocol

    @property
    def last_seq(self) -> int:
        return int(self._counters["last_seq"])

    def put(self, batch: Batch) -> int:
        if batch.seq <= self.last_seq:
            raise ValueError(f"batch_seq {batch.seq} is not above {self.last_seq}")
        payload = wire.batch_to_bytes(batch)
        size, n = len(payload), len(batch.samples)
        with self._transaction():
            dropped = self._expire()
            self._bump(last_seq=batch.seq - self.last_seq)
            if size > self.max_bytes:
                self._count_drop(1, n, "batch bigger than the whole buffer", batch.seq)
                return dropped + 1
            if self._bytes + size > self.max_bytes:
                if self.policy is DropPolicy.DROP_NEWEST:
                    self._count_drop(1, n, "buffer full (drop_newest)", batch.seq)
                    return dropped + 1
                dropped += self._drop_oldest(self._bytes + size - self.max_bytes)
            self._db.execute(
                "INSERT INTO batches (seq, created, samples, bytes, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch.seq, self._now(), n, size, payload),
            )
            self._count += 1
            self._bytes += size
            self._bump(stored_batches=1, stored_samples=n)
        return dropped

    def next_after(self, after: int) -> StoredBatch | None:
        row = self._db.execute(
            "SELECT seq, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT 1", (after,)
        ).fetchone()
        return None if row is None else StoredBatch(int(row[0]), bytes(row[1]))

    def pending(self, after: int = 0) -> list[StoredBatch]:
        rows = self._db.execute(
            "SELECT seq, payload FROM batches WHERE seq > ? ORDER BY seq", (after,)
        ).fetchall()
        return [StoredBatch(int(seq), bytes(payload)) for seq, payload in rows]

    def ack(self, batch_seq: int) -> bool:
        with self._transaction():
            row = self._db.execute(
                "DELETE FROM batches WHERE seq = ? RETURNING bytes", (batch_seq,)
            ).fetchone()
            if row is None:
                return False
            self._count -= 1
            self._bytes -= int(row[0])
        return True

    def expire(self) -> int:
        with self._transaction():
            return self._expire()

    def stats(self) -> BufferStats:
        c = self._counters
        return BufferStats(
            batches=self._count,
            bytes=self._bytes,
            stored_batches=c["stored_batches"],
            stored_samples=c["stored_samples"],
            dropped_batches=c["dropped_batches"],
            dropped_samples=c["dropped_samples"],
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._release_lock()

    def __len__(self) -> int:
        return self._count

    # ----------------------------------------------------------- internals

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        counters, count, size = dict(self._counters), self._count, self._bytes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._counters, self._count, self._bytes = counters, count, size
            raise

    def _bump(self, **deltas: int) -> None:
        for name, delta in deltas.items():
            if delta:
                self._counters[name] += delta
                self._db.execute(
                    "UPDATE counters SET value = ? WHERE name = ?", (self._counters[name], name)
                )

    def _count_drop(self, batches: int, samples: int, why: str, first_seq: int) -> None:
        self._bump(dropped_batches=batches, dropped_samples=samples)
        log.debug("telemetry batches dropped", batches=batches, why=why, first_seq=first_seq)

    def _expire(self) -> int:
        cutoff = self._now() - self.max_age_s
        oldest = self._db.execute("SELECT min(created) FROM batches").fetchone()[0]
        if oldest is None or oldest >= cutoff:
            return 0
        n, samples, size, first = self._db.execute(
            "SELECT count(*), sum(samples), sum(bytes), min(seq) FROM batches WHERE created < ?",
            (cutoff,),
        ).fetchone()
        self._db.execute("DELETE FROM batches WHERE created < ?", (cutoff,))
        self._count -= n
        self._bytes -= size
        self._count_drop(n, samples, f"older than {self.max_age_s:g} s", first)
        return int(n)

    def _drop_oldest(self, need: int) -> int:
        """Delete the oldest batches until ``need`` bytes are free."""
        freed = n = samples = 0
        first = last = 0
        while freed < need:
            rows = self._db.execute(
                "SELECT seq, samples, bytes FROM batches WHERE seq > ? ORDER BY seq LIMIT 256",
                (last,),
            ).fetchall()
            if not rows:
                break
            for seq, count, size in rows:
                first = first or seq
                freed, n, samples, last = freed + size, n + 1, samples + count, seq
                if freed >= need:
                    break
        if n == 0:
            return 0
        self._db.execute("DELETE FROM batches WHERE seq <= ?", (last,))
        self._count -= n
        self._bytes -= freed
        self._count_drop(n, samples, "buffer full (drop_oldest)", first)
        return n

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None


def _take_lock(path: Path) -> IO[str]:
    lock = open(path, "a+")  # held open for the buffer's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise BufferLocked(
            f"{path.with_suffix('')} is used by another agent (pid {holder}); "
            "give each agent its own buffer.path or --state-dir"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
