"""The batcher: every ``telemetry_interval_s``, one batch of every asset's
newest sample not batched yet goes into the buffer (and to the MQTT
publisher), and the uplink is told there is more to send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

import structlog

from gridpilot.core.telemetry import Sample

from ..config.site import BufferConfig
from .buffer import Batch, TelemetryBuffer
from .publish import MqttTelemetryPublisher

log = structlog.get_logger(__name__)


class HasLatest(Protocol):
    @property
    def latest(self) -> Sample | None: ...


class Batcher:
    def __init__(
        self,
        pollers: Mapping[str, HasLatest],
        buffer: TelemetryBuffer,
        *,
        interval_s: float,
        limits: BufferConfig,
        notify: Callable[[], None],
        publisher: MqttTelemetryPublisher | None = None,
        log_context: Mapping[str, str] | None = None,
    ) -> None:
        self._pollers = pollers
        self._buffer = buffer
        self._interval_s = interval_s
        self._limits = limits
        self._notify = notify
        self._publisher = publisher
        self._seq = 0
        self._batched_ts: dict[str, datetime] = {}
        self._dropping = False
        self._log = log.bind(**(log_context or {}))

    def start(self, now: datetime) -> None:
        """batch_seq stays increasing across restarts: it starts from the clock
        in milliseconds and counts one per batch (far below 1000 per second),
        and never below what the buffer has seen (a clock set back)."""
        self._seq = max(int(now.timestamp() * 1000), self._buffer.last_seq)

    async def run(self) -> None:
        interval = self._interval_s
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval, time.monotonic())
            try:
                self.make_batch()
            except Exception:  # a bug: keep the loop, show it
                self._log.exception("telemetry batch failed")

    def make_batch(self) -> Batch | None:
        """One batch with every asset's latest sample not batched yet."""
        samples = []
        for asset_id, poller in self._pollers.items():
            sample = poller.latest
            if sample is not None and self._batched_ts.get(asset_id) != sample.ts:
                samples.append(sample)
                self._batched_ts[asset_id] = sample.ts
        if not samples:
            return None
        if self._publisher is not None:
            self._publisher.offer(samples)
        self._seq += 1
        batch = Batch(self._seq, tuple(samples))
        dropped = self._buffer.put(batch)
        if dropped and not self._dropping:
            stats = self._buffer.stats()
            self._log.warning(
                "telemetry buffer full or aged out; dropping batches (counted)",
                policy=self._limits.policy,
                max_bytes=self._limits.max_bytes,
                max_age_s=self._limits.max_age_s,
                buffered_batches=stats.batches,
                dropped_batches_total=stats.dropped_batches,
            )
        elif not dropped and self._dropping:
            self._log.info(
                "telemetry buffer no longer dropping",
                dropped_batches_total=self._buffer.stats().dropped_batches,
            )
        self._dropping = bool(dropped)
        self._notify()
        return batch
