"""A replica's heartbeats share one database write per window (TouchBatcher),
and each caller still learns its own session's fate."""

from __future__ import annotations

import asyncio

import pytest

from gridpilot.ingest.edge_reports import EdgeBufferReport
from gridpilot.ingest.registry import Touch
from gridpilot.ingest.touches import TouchBatcher


class Store:
    def __init__(self, ended: set[str] | None = None, fail: Exception | None = None) -> None:
        self.calls: list[list[Touch]] = []
        self.ended = ended or set()
        self.fail = fail

    async def touch_many(self, touches: list[Touch]) -> set[str]:
        self.calls.append(list(touches))
        if self.fail is not None:
            raise self.fail
        return {t.session_id for t in touches} - self.ended


def _batcher(store: Store, **kw: object) -> TouchBatcher:
    return TouchBatcher(store, window_s=0.05, **kw)  # type: ignore[arg-type]


async def test_heartbeats_of_one_window_are_one_write_and_each_hears_its_session():
    store = Store(ended={"s-2"})
    batcher = _batcher(store)

    live = await asyncio.gather(*(batcher.touch(Touch(f"s-{i}")) for i in range(5)))

    assert live == [True, True, False, True, True]
    assert [len(c) for c in store.calls] == [5]
    assert batcher.flushes == 1


async def test_two_heartbeats_of_one_session_in_a_window_are_merged():
    store = Store()
    batcher = _batcher(store)
    report = EdgeBufferReport(1, 2, 3, 4)

    first = batcher.touch(Touch("s-1", None, 2, "0: bad"))
    second = batcher.touch(Touch("s-1", report, 3, None))

    assert await asyncio.gather(first, second) == [True, True]
    [[merged]] = store.calls
    assert (merged.report, merged.rejected, merged.last_rejection) == (report, 5, "0: bad")


async def test_a_failed_write_fails_every_heartbeat_of_its_batch_and_the_next_batch_runs():
    store = Store(fail=ConnectionError("database down"))
    batcher = _batcher(store)

    results = await asyncio.gather(
        batcher.touch(Touch("s-1")), batcher.touch(Touch("s-2")), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)

    store.fail = None
    assert await batcher.touch(Touch("s-1")) is True
    assert len(store.calls) == 2


async def test_a_batch_is_capped_and_the_rest_follow_in_the_next_write():
    store = Store()
    batcher = _batcher(store, max_batch=3)

    live = await asyncio.gather(*(batcher.touch(Touch(f"s-{i}")) for i in range(7)))

    assert all(live)
    assert [len(c) for c in store.calls] == [3, 3, 1]


async def test_a_caller_that_gives_up_does_not_break_the_batch():
    store = Store()
    batcher = _batcher(store)
    gone = asyncio.create_task(batcher.touch(Touch("s-1")))
    stays = asyncio.create_task(batcher.touch(Touch("s-2")))
    await asyncio.sleep(0)
    gone.cancel()

    assert await stays is True
    with pytest.raises(asyncio.CancelledError):
        await gone
