"""Store-and-forward for telemetry: batches wait here until the headend acks them.

The runtime puts every batch here *before* it is sent and removes it only on
its ``TelemetryAck`` (which the headend sends after the commit): at-least-once
from this buffer to the database. The buffer is bounded by bytes and by age;
when full, an explicit :class:`DropPolicy` decides what goes, and every drop
is counted (the counts travel to the headend in each Heartbeat).

:class:`~gridpilot.edge_agent.telemetry.buffer_sqlite.SqliteTelemetryBuffer` is the
implementation (a file in production, ``:memory:`` in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gridpilot.core.telemetry import Sample


class DropPolicy(StrEnum):
    DROP_OLDEST = "drop_oldest"
    """Full: delete the oldest batches until the new one fits (keep what is recent)."""
    DROP_NEWEST = "drop_newest"
    """Full: refuse the new batch (keep the history that is already there)."""


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch as the buffer holds it: its serialized ``TelemetryBatch``,
    handed to the uplink as stored (never decoded back into samples)."""

    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class BufferStats:
    batches: int
    """Batches held (unacked)."""
    bytes: int
    """Their serialized size (what ``max_bytes`` bounds)."""
    stored_batches: int
    stored_samples: int
    """Cumulative: accepted into the buffer over its life."""
    dropped_batches: int
    dropped_samples: int
    """Cumulative: dropped unsent (full, too old, or bigger than the buffer)."""


class TelemetryBuffer(Protocol):
    @property
    def last_seq(self) -> int:
        """The highest batch_seq ever put (0 for a new buffer); it survives restarts."""
        ...

    def put(self, batch: Batch) -> int:
        """Store a batch (``seq`` above :attr:`last_seq`); returns how many batches
        this call dropped (expired ones, the oldest, or the new one itself)."""
        ...

    def next_after(self, after: int) -> StoredBatch | None:
        """The oldest held batch with ``seq > after``."""
        ...

    def pending(self, after: int = 0) -> list[StoredBatch]:
        """Every held batch with ``seq > after``, oldest first."""
        ...

    def ack(self, batch_seq: int) -> bool:
        """Forget one batch (it is durable upstream); False when it was not held."""
        ...

    def expire(self) -> int:
        """Drop batches older than the age cap; returns how many."""
        ...

    def stats(self) -> BufferStats: ...

    def close(self) -> None: ...

    def __len__(self) -> int: ...
