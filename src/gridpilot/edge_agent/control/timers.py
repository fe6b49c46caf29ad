"""Lease timers: wake a controller's queue at a wall-clock time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..clock import Clock

K = TypeVar("K")


class Timers(Generic[K]):
    """At most one pending timer per key; a new one replaces the old.

    A timer sleeps on the clock (so a test's ManualClock drives it) and only
    *enqueues* an event; the owner re-checks the clock when it handles it (the
    system clock sleeps on a monotonic clock, leases are wall-clock times) and
    reschedules if it came early.
    """

    def __init__(
        self, clock: Clock, deliver: Callable[[K, str], Coroutine[Any, Any, None]]
    ) -> None:
        self._clock = clock
        self._deliver = deliver
        self._tasks: dict[K, asyncio.Task[None]] = {}

    def at(self, key: K, token: str, when: datetime) -> None:
        self.cancel(key)
        self._tasks[key] = asyncio.create_task(self._fire(key, token, when))

    def after(self, key: K, token: str, delay_s: float) -> None:
        self.cancel(key)
        self._tasks[key] = asyncio.create_task(self._fire(key, token, delay_s))

    def cancel(self, key: K) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        for key in list(self._tasks):
            self.cancel(key)

    async def _fire(self, key: K, token: str, wait: datetime | float) -> None:
        if isinstance(wait, datetime):
            await self._clock.sleep_until(wait)
        else:
            await self._clock.sleep(wait)
        await self._deliver(key, token)
