"""The readiness probe of Temporal: a cheap call, bounded in time, never raises."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from temporalio.service import RPCError, RPCStatusCode

from gridpilot.ops.temporal import probe


class FakeService:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls: list[dict[str, Any]] = []

    async def get_system_info(self, req: Any, **kw: Any) -> Any:
        self.calls.append(kw)
        if self.behaviour == "down":
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        if self.behaviour == "hang":
            await asyncio.Event().wait()
        return object()


def _client(behaviour: str) -> Any:
    return SimpleNamespace(workflow_service=FakeService(behaviour))


async def test_probe_is_ok_when_temporal_answers_and_asks_once_with_a_deadline() -> None:
    client = _client("up")
    assert await probe(client, timedelta(seconds=2)) == "ok"
    assert client.workflow_service.calls == [{"retry": False, "timeout": timedelta(seconds=2)}]


async def test_probe_names_the_error_when_temporal_refuses() -> None:
    state = await probe(_client("down"))
    assert state == "unreachable: RPCError: connection refused"


async def test_probe_gives_up_after_its_deadline_when_temporal_hangs() -> None:
    started = time.monotonic()
    state = await probe(_client("hang"), timedelta(seconds=0.1))
    assert state == "unreachable: no answer in 0.1 s"
    assert time.monotonic() - started < 5
