"""Waiting until something is true: the one polling helper of the tests.

``wait_for`` (async) and ``wait_for_sync`` call ``check`` until it returns
something truthy and return that. The bound is generous (a busy CI machine
with every core taken must still pass); a check that is met returns at once,
so only a failing test pays for it. On timeout the AssertionError says what
was awaited (``what``, else the check's source) and the last value or error
seen.

Exceptions of the types in ``ignore`` count as "not yet" (a device that is
still reconnecting); any other exception, an AssertionError or pytest.fail
inside the check included, ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any

DEFAULT_TIMEOUT_S = 30.0
ASYNC_INTERVAL_S = 0.05
SYNC_INTERVAL_S = 0.2  # the sync waits poll processes, HTTP and databases

Check = Callable[[], Any]
What = str | Callable[[], str] | None  # a callable is asked at the timeout (the state then)
Ignored = type[BaseException] | tuple[type[BaseException], ...]


async def wait_for(
    check: Check,
    timeout: float = DEFAULT_TIMEOUT_S,
    what: What = None,
    *,
    interval: float = ASYNC_INTERVAL_S,
    ignore: Ignored = (),
    wake: asyncio.Event | None = None,
) -> Any:
    """Poll ``check`` (sync, or returning an awaitable) every ``interval`` s
    until it returns something truthy; return that. ``wake``: an event set
    when what the check reads changed, to re-check at once rather than at
    the next interval (it is cleared before each check)."""
    waited = _Waited(check, timeout, what)
    while True:
        if wake is not None:
            wake.clear()  # before the check: a change during it is not lost
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            waited.error = exc
        else:
            if value:
                return value
            waited.value, waited.error = value, None
        pause = waited.pause(interval)
        if wake is None:
            await asyncio.sleep(pause)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), pause)


def wait_for_sync(
    check: Check,
    timeout: float = DEFAULT_TIMEOUT_S,
    what: What = None,
    *,
    interval: float = SYNC_INTERVAL_S,
    ignore: Ignored = (),
) -> Any:
    """``wait_for`` for tests that are not async (processes, files, psycopg)."""
    waited = _Waited(check, timeout, what)
    while True:
        try:
            value = check()
        except ignore as exc:
            waited.error = exc
        else:
            if value:
                return value
            waited.value, waited.error = value, None
        time.sleep(waited.pause(interval))


class _Waited:
    """The bound of one wait and what it saw last."""

    def __init__(self, check: Check, timeout: float, what: What) -> None:
        self.check, self.timeout, self.what = check, timeout, what
        self.deadline = time.monotonic() + timeout
        self.value: Any = None
        self.error: BaseException | None = None

    def pause(self, interval: float) -> float:
        """How long to sleep before the next check; raises once the time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(self.message())
        return min(interval, left)

    def message(self) -> str:
        what = self.what() if callable(self.what) else self.what or describe(self.check)
        seen = f"last error: {self.error!r}" if self.error is not None else f"last: {self.value!r}"
        return f"timed out after {self.timeout:g} s waiting for {what} ({seen})"


def describe(check: Check) -> str:
    """A check's source line if it is a lambda, else its name."""
    name = getattr(check, "__qualname__", None) or repr(check)
    if getattr(check, "__name__", "") != "<lambda>":
        return name
    try:
        line = inspect.getsource(check).strip()
    except (OSError, TypeError):
        return name
    text = " ".join(line[line.find("lambda") :].split())
    depth = 0
    for i, char in enumerate(text):  # the lambda ends at a "," or ")" of the call around it
        if depth == 0 and char in ",)]}":
            return text[:i].strip()
        depth += (char in "([{") - (char in ")]}")
    return text
