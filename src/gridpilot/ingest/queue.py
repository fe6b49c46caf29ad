"""The ingest queue: batches between the gRPC servicers and the one writer.

Bounded in bytes (the serialized size of each batch as it came off the
wire), not in batches: a batch of 5 samples and one of 5,000 do not weigh
the same. A batch's bytes stay charged from ``put()`` until the writer calls
``done()`` after the commit, so the bound covers everything the pipeline
holds, including the transaction in flight.

The interface is three calls (``put``, ``drain``, ``done``) so a distributed
bus (e.g. NATS JetStream: publish, fetch, ack) can replace the in-process
queue without touching the servicer or the writer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=Sized)


class TelemetryQueue(Protocol[T]):
    max_bytes: int

    @property
    def bytes(self) -> int:
        """Bytes charged now: queued plus drained but not yet done."""
        ...

    @property
    def depth(self) -> int:
        """Batches waiting to be drained."""
        ...

    async def put(self, item: T) -> None:
        """Enqueue; waits while the bound would be exceeded (backpressure)."""
        ...

    async def drain(self, max_items: int, max_bytes: int) -> list[T]:
        """Wait for at least one item; return the oldest ones, up to the limits
        (always at least one, however big)."""
        ...

    async def done(self, items: Sequence[T]) -> None:
        """The drained items are durable: release their bytes."""
        ...


class MemoryTelemetryQueue(Generic[T]):
    """In-process FIFO. Putters are served in arrival order: a big batch
    waiting for room is not overtaken by small ones (no starvation)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._items: deque[T] = deque()
        self._charged = 0
        self._put_lock = asyncio.Lock()  # FIFO among waiting putters
        self._changed = asyncio.Condition()

    @property
    def bytes(self) -> int:
        return self._charged

    @property
    def depth(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        size = max(item.size, 1)
        async with self._put_lock, self._changed:
            # An item larger than the whole bound still goes in, alone:
            # otherwise it could never be written.
            await self._changed.wait_for(
                lambda: self._charged == 0 or self._charged + size <= self.max_bytes
            )
            self._items.append(item)
            self._charged += size
            self._changed.notify_all()

    async def drain(self, max_items: int, max_bytes: int) -> list[T]:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            out = [self._items.popleft()]
            total = out[0].size
            while self._items and len(out) < max_items:
                nxt = self._items[0].size
                if total + nxt > max_bytes:
                    break
                out.append(self._items.popleft())
                total += nxt
            return out

    async def done(self, items: Sequence[T]) -> None:
        async with self._changed:
            self._charged -= sum(max(i.size, 1) for i in items)
            self._changed.notify_all()
