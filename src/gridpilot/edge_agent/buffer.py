"""Store-and-forward for telemetry: batches wait here until the headend acks them.

:class:`MemoryTelemetryBuffer` keeps them in memory; a disk (SQLite) buffer
with the same three-method interface can replace it without touching the
runtime. When full, the oldest batch is dropped and counted: memory stays
bounded and the loss is visible.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from gridpilot.core.telemetry import Sample


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    samples: tuple[Sample, ...]


class TelemetryBuffer(Protocol):
    dropped: int
    """Batches dropped because the buffer was full (since the agent started)."""

    def put(self, batch: Batch) -> int:
        """Store a batch (seq above every stored one); returns how many old
        batches were dropped to make room."""
        ...

    def pending(self, after: int = 0) -> list[Batch]:
        """Unacked batches with ``seq > after``, oldest first."""
        ...

    def next_after(self, after: int) -> Batch | None:
        """The oldest batch with ``seq > after``."""
        ...

    def ack(self, batch_seq: int) -> bool:
        """Forget one batch; False when it was not (or no longer) held."""
        ...

    def ack_through(self, batch_seq: int) -> int:
        """Forget every batch with ``seq <= batch_seq``; returns how many."""
        ...

    def __len__(self) -> int: ...


class MemoryTelemetryBuffer:
    def __init__(self, max_batches: int) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        self.max_batches = max_batches
        self.dropped = 0
        self._seqs: list[int] = []  # sorted, ascending
        self._batches: dict[int, Batch] = {}

    def put(self, batch: Batch) -> int:
        if self._seqs and batch.seq <= self._seqs[-1]:
            raise ValueError(f"batch_seq {batch.seq} is not above {self._seqs[-1]}")
        dropped = 0
        while len(self._seqs) >= self.max_batches:
            del self._batches[self._seqs.pop(0)]
            dropped += 1
        self._seqs.append(batch.seq)
        self._batches[batch.seq] = batch
        self.dropped += dropped
        return dropped

    def pending(self, after: int = 0) -> list[Batch]:
        start = bisect.bisect_right(self._seqs, after)
        return [self._batches[s] for s in self._seqs[start:]]

    def next_after(self, after: int) -> Batch | None:
        """The oldest batch with ``seq > after`` (cheap; the sender's hot path)."""
        i = bisect.bisect_right(self._seqs, after)
        return self._batches[self._seqs[i]] if i < len(self._seqs) else None

    def ack(self, batch_seq: int) -> bool:
        if self._batches.pop(batch_seq, None) is None:
            return False
        del self._seqs[bisect.bisect_left(self._seqs, batch_seq)]
        return True

    def ack_through(self, batch_seq: int) -> int:
        cut = bisect.bisect_right(self._seqs, batch_seq)
        for seq in self._seqs[:cut]:
            del self._batches[seq]
        del self._seqs[:cut]
        return cut

    def __len__(self) -> int:
        return len(self._seqs)
