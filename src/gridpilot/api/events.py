"""Live updates for the console: ``GET /api/v1/events``, server-sent events.

One poller per API process (not per browser tab) asks the database once a
second whether dispatches, telemetry or agents changed, and tells every open
stream which of them did; the tabs then re-read what they show. The cost to
the database is one small query a second, however many tabs are open; each
stream holds one pending message at most (a slow reader misses nothing but
intermediate duplicates), and the number of streams is capped (503 beyond).

The stream is read with ``fetch`` and the same bearer token as every API
call (an ``EventSource`` cannot send one), so no credential is ever put in
a URL. Events carry only what changed, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.schema import tables as t
from gridpilot.schema import tenancy

from .errors import Unavailable

router = APIRouter(prefix="/api/v1", tags=["events"])
POLL_S = 1.0
TICK_S = 15.0  # an event even when nothing changed: ages and "silent" alarms move on
MAX_STREAMS = 500


def _versions() -> Any:
    d, latest, ses = t.dispatches, t.telemetry_latest, t.agent_sessions
    return select(
        select(func.max(d.c.updated_at)).scalar_subquery().label("dispatches"),
        select(func.max(latest.c.received_at)).scalar_subquery().label("telemetry"),
        select(func.max(func.greatest(ses.c.last_seen, ses.c.ended_at)))
        .scalar_subquery()
        .label("agents"),
    )


class ChangeFeed:
    """The process's one poller and its subscribers (bounded queues)."""

    def __init__(self, engine: AsyncEngine, poll_s: float = POLL_S) -> None:
        self._engine = engine
        self._poll_s = poll_s
        self._queues: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return len(self._queues)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[str]]:
        if len(self._queues) >= MAX_STREAMS:
            raise Unavailable("events", f"too many event streams (at most {MAX_STREAMS})")
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._queues.add(queue)
        if self._task is None or self._task.done():  # started with the first stream
            # Shared by every stream, so system work: it reads only the newest
            # change times, and says no more than "dispatches changed".
            with tenancy.scope(tenancy.SYSTEM):
                self._task = asyncio.create_task(self._poll(), name="console-change-feed")
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            if not self._queues and self._task is not None:
                self._task.cancel()
                self._task = None

    def _publish(self, changed: str) -> None:
        for q in self._queues:
            if q.full():  # keep only the newest: the reader re-reads everything anyway
                q.get_nowait()
            q.put_nowait(changed)

    async def _poll(self) -> None:
        last: dict[str, Any] | None = None
        while True:
            try:
                async with self._engine.connect() as conn:
                    now = dict((await conn.execute(_versions())).mappings().one())
            except Exception:  # the database is away: try again, the streams stay
                now = last or {}
            if last is not None:
                changed = [k for k, v in now.items() if v != last.get(k)]
                if changed:
                    self._publish(" ".join(changed))
            last = now
            await asyncio.sleep(self._poll_s)


def _feed(request: Request) -> ChangeFeed:
    state = request.app.state
    if getattr(state, "change_feed", None) is None:
        state.change_feed = ChangeFeed(state.engine)
    feed: ChangeFeed = state.change_feed
    return feed


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request) -> StreamingResponse:
    """Server-sent events: `event: changed` with `data:` the parts that changed
    (`dispatches`, `telemetry`, `agents`), and `event: tick` every 15 s."""
    feed = _feed(request)
    subscription = feed.subscribe()
    queue = await subscription.__aenter__()

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    changed = await asyncio.wait_for(queue.get(), TICK_S)
                    yield f"event: changed\ndata: {changed}\n\n"
                except TimeoutError:
                    yield "event: tick\ndata: \n\n"
        finally:
            await subscription.__aexit__(None, None, None)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
