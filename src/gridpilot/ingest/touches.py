"""A replica's heartbeats, written to the database together.

Each heartbeat updates its session's ``last_seen`` and its gateway's edge
figures (``GatewayStore.touch``). One transaction per heartbeat made an idle
fleet cost CPU in proportion to its size; here the heartbeats that arrive
within ``window_s`` of each other share one transaction of two statements
(``GatewayStore.touch_many``), and each caller still learns whether its own
session is live. A flush runs only while heartbeats are pending: there is no
background task to start or stop.

A failed write fails every heartbeat of that batch with the same error: the
callers treat it as one failed touch each (the servicer keeps the stream and
its refused-sample count for the next heartbeat).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from .registry import GatewayStore, Touch

# How long the first heartbeat of a batch waits for others. Small against the
# agents' 10 s heartbeat and the 25 s silence limit.
WINDOW_S = 0.25
# The most heartbeats in one transaction; more wait for the next one.
MAX_BATCH = 2000


class TouchBatcher:
    def __init__(
        self, store: GatewayStore, window_s: float = WINDOW_S, max_batch: int = MAX_BATCH
    ) -> None:
        self._store = store
        self._window_s = window_s
        self._max = max_batch
        self._pending: dict[str, tuple[Touch, list[asyncio.Future[bool]]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.flushes = 0  # transactions written (for tests and the bench)

    async def touch(self, touch: Touch) -> bool:
        """``GatewayStore.touch`` in the next batch: False when the session was
        ended elsewhere; raises what the batch's write raised."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queued = self._pending.get(touch.session_id)
        if queued is None:
            self._pending[touch.session_id] = (touch, [future])
        else:  # a second heartbeat of the session before the flush: one update
            earlier, futures = queued
            merged = replace(
                touch,
                report=touch.report or earlier.report,
                rejected=earlier.rejected + touch.rejected,
                last_rejection=touch.last_rejection or earlier.last_rejection,
            )
            self._pending[touch.session_id] = (merged, [*futures, future])
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="touch-batcher")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(self._window_s)
            batch = dict(list(self._pending.items())[: self._max])
            for session_id in batch:
                del self._pending[session_id]
            try:
                live = await self._store.touch_many([t for t, _ in batch.values()])
            except BaseException as exc:  # every caller of this batch sees the failure
                for _, futures in batch.values():
                    for f in futures:
                        if f.done():
                            pass
                        elif isinstance(exc, asyncio.CancelledError):
                            f.cancel()
                        else:
                            f.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            finally:
                self.flushes += 1
            for session_id, (_, futures) in batch.items():
                for f in futures:
                    if not f.done():
                        f.set_result(session_id in live)
