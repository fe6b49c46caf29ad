"""Polling done once: one poller per device keeps the last snapshot.

Consumers (the telemetry batcher) read :attr:`Poller.latest`, never the
device. Availability comes from the last poll, and the log records only the
transitions (became unreachable, recovered), not every failed poll. While a
device is unavailable its sample carries no values, ``state: unavailable``,
the error, and ``details.quality`` marking every field the last good reading
had as stale (with ``details.stale_since``, that reading's time).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from gridpilot.core.telemetry import CORE_FIELDS, Sample
from gridpilot.core.telemetry_fields import BY_NAME, Quality

from ..adapters import DeviceError, DeviceMisconfigured
from ..clock import Clock
from ..device import ManagedDevice

log = structlog.get_logger(__name__)

RESERVED = {f.name for f in BY_NAME.values() if f.reserved}


class Poller:
    def __init__(self, device: ManagedDevice, *, interval_s: float, clock: Clock) -> None:
        self.device = device
        self.interval_s = interval_s
        self.latest: Sample | None = None
        self.available: bool | None = None  # None until the first poll
        self._last_good: Sample | None = None
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
            if isinstance(exc, DeviceMisconfigured):
                self._log.error("device misconfigured", error=str(exc))
            elif isinstance(exc, DeviceError):
                self._log.warning("device unreachable", error=str(exc))
            else:
                self._log.error("device read failed", exc_info=exc)
            if self.latest is not None and self.latest.state != "unavailable":
                self._last_good = self.latest
        self.available = False
        details: dict[str, object] = {"error": str(exc) or type(exc).__name__}
        last = self._last_good
        if last is not None:  # what the last good reading held is stale now
            held = [n for n in CORE_FIELDS if getattr(last, n) is not None]
            held += [n for n in last.details if n not in RESERVED]
            held += ["state"] if last.state is not None else []
            details["quality"] = {n: str(Quality.STALE) for n in sorted(held)}
            details["stale_since"] = last.ts.isoformat()
        self.latest = Sample(
            asset_id=self.device.asset_id,
            ts=self._clock.now(),
            state="unavailable",
            details=details,
        )
