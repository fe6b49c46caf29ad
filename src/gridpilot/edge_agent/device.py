"""One device as the agent uses it: calls serialized, bounded in time,
reconnected on demand. Pollers and controllers share it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from gridpilot.core.telemetry import Sample

from .adapters import DeviceAdapter, DeviceError, DeviceUnavailable

T = TypeVar("T")


class ManagedDevice:
    def __init__(self, asset_id: str, adapter: DeviceAdapter, *, timeout_s: float) -> None:
        self.asset_id = asset_id
        self.adapter = adapter
        self._timeout = timeout_s
        # One call at a time: a Modbus or OPC UA session must never see a read
        # interleaved with a write, and two writes must never race.
        self._lock = asyncio.Lock()
        self._connected = False

    async def read(self) -> Sample:
        async with self._lock:
            await self._ensure_connected()
            return await self._bounded(self.adapter.read(), "read")

    async def write(self, p_kw: float) -> float:
        async with self._lock:
            await self._ensure_connected()
            return await self._bounded(self.adapter.write(p_kw), "write")

    async def close(self) -> None:
        async with self._lock:
            self._connected = False
            try:
                await asyncio.wait_for(self.adapter.close(), self._timeout)
            except (DeviceError, TimeoutError):
                pass

    async def _ensure_connected(self) -> None:
        if not self._connected:
            await self._bounded(self.adapter.connect(), "connect")
            self._connected = True

    async def _bounded(self, call: Coroutine[Any, Any, T], what: str) -> T:
        try:
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancel that
            # races the call's completion, and a poller that was told to stop
            # keeps polling (seen as an agent that does not stop on SIGTERM).
            async with asyncio.timeout(self._timeout):
                return await call
        except TimeoutError:
            self._connected = False
            raise DeviceUnavailable(f"no answer to {what} within {self._timeout:g} s") from None
        except DeviceUnavailable:
            self._connected = False
            raise
