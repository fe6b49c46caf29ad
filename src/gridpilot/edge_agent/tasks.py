"""Ending the agent's tasks at shutdown."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_ended(
    tasks: list[asyncio.Task[None]], what: str, log: Any, timeout_s: float = 5.0
) -> None:
    """Wait for cancelled tasks to end, but not forever: a task that ignores
    its cancellation must not keep the agent from stopping (what it had
    buffered is on disk). Its stack goes to the log, to find out why."""
    if not tasks:
        return
    done, stuck = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: ending is all that matters here
    for task in stuck:
        log.error("task did not stop", step=what, task=task.get_name(), at=awaiting(task))


def awaiting(task: asyncio.Task[None]) -> str:
    """Where a suspended task waits: its chain of awaited coroutines."""
    parts = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            name = frame.f_code.co_filename.rsplit("/", 1)[-1]
            parts.append(f"{name}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(parts)
