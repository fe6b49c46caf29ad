"""Wall-clock time, passed in so tests (and simulators) can drive it.

A clock also sleeps: code that waits for a time (a lease's start or end,
the fail-safe timeout) waits through its clock, so a test with a
:class:`ManualClock` moves it by :meth:`ManualClock.advance` instead of
waiting for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Wait until this clock reads ``when`` (at once if it is past)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    async def sleep_until(self, when: datetime) -> None:
        # asyncio sleeps on a monotonic clock: a wall clock set meanwhile makes
        # this early or late, so whoever waits re-checks now() (see Timers)
        await asyncio.sleep(max((when - self.now()).total_seconds(), 0.0))


class ManualClock:
    """A clock that moves only when told to (the fake for unit tests).
    Sleepers wake when :meth:`advance` or :meth:`set` reaches their time."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    def set(self, when: datetime) -> None:
        self._now = when
        while self._sleepers and self._sleepers[0][0] <= when:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many are waiting (cancelled ones may still count until woken)."""
        return sum(1 for _, _, w in self._sleepers if not w.done())

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=max(seconds, 0.0)))

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)  # still a point where others run, as a real sleep
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), waiter))
        await waiter
