"""Polling done once: one poller per device keeps the last snapshot.

Consumers (the telemetry batcher) read :attr:`Poller.latest`, never the
device. Availability comes from the last poll, and the log records only the
transitions (became unreachable, recovered), not every failed poll.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from gridpilot.core.telemetry import Sample

from .adapters import DeviceError
from .clock import Clock
from .device import ManagedDevice

log = structlog.get_logger(__name__)


class Poller:
    def __init__(self, device: ManagedDevice, *, interval_s: float, clock: Clock) -> None:
        self.device = device
        self.interval_s = interval_s
        self.latest: Sample | None = None
        self.available: bool | None = None  # None until the first poll
        self._clock = clock
        self._log = log.bind(asset_id=device.asset_id)

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            await self.poll_once()
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (slow device): skip, don't burst
                next_at, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)

    async def poll_once(self) -> None:
        try:
            sample = await self.device.read()
        except Exception as exc:
            self._unavailable(exc)
            return
        if self.available is False:
            self._log.info("device recovered")
        self.available = True
        self.latest = sample

    def _unavailable(self, exc: Exception) -> None:
        if self.available is not False:
            if isinstance(exc, DeviceError):
                self._log.warning("device unreachable", error=str(exc))
            else:
                self._log.error("device read failed", exc_info=exc)
        self.available = False
        self.latest = Sample(
            asset_id=self.device.asset_id,
            ts=self._clock.now(),
            state="unavailable",
            details={"error": str(exc) or type(exc).__name__},
        )
