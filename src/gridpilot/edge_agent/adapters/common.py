"""What every protocol adapter shares: point value normalization, reconnect
backoff, a transition logger, and the last-value cache of push protocols."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from gridpilot.core.telemetry import Sample, build_sample
from gridpilot.core.telemetry_fields import Quality

from ..config import PointBase

log = structlog.get_logger(__name__)


def normalize(point: PointBase, raw: Any) -> tuple[Any, Quality]:
    """``raw * scale + offset`` (or the enum text) and the value's quality.
    Booleans and text pass unchanged; a raw value that is no number is bad."""
    if raw is None:
        return None, Quality.BAD
    if isinstance(raw, bool):
        return raw, Quality.GOOD
    if isinstance(raw, int | float):
        if point.enum is not None and float(raw).is_integer() and int(raw) in point.enum:
            return point.enum[int(raw)], Quality.GOOD
        if isinstance(raw, int) and point.scale == 1 and point.offset == 0:
            return raw, Quality.GOOD  # counters stay exact
        value = raw * point.scale + point.offset
        if not math.isfinite(value):
            return None, Quality.BAD
        return tidy(value), Quality.GOOD
    if isinstance(raw, str):
        return raw, Quality.GOOD
    return str(raw), Quality.GOOD


def raw_for(point: PointBase, value: float) -> float:
    """The raw device value that :func:`normalize` turns into ``value``."""
    return (value - point.offset) / point.scale


def tidy(value: float) -> float:
    """Drop binary noise (0.1 * 3 -> 0.3) while keeping 15 significant digits."""
    return float(f"{value:.15g}")


class Backoff:
    """Exponential reconnect delays with jitter, capped."""

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial_s = min(initial_s, max_s)
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._next = self.initial_s

    def next_delay(self) -> float:
        delay = self._next * (1 + self.jitter * (2 * self._rng.random() - 1))
        self._next = min(self._next * self.factor, self.max_s)
        return max(0.0, min(delay, self.max_s))

    def reset(self) -> None:
        self._next = self.initial_s


class LinkLog:
    """Logs a device link's transitions (lost, recovered, misconfigured) once
    each, never every failed attempt."""

    def __init__(self, asset_id: str, protocol: str, endpoint: str) -> None:
        self._log = log.bind(asset_id=asset_id, protocol=protocol, endpoint=endpoint)
        self.up: bool | None = None
        self.last_error = ""

    def connected(self, **details: Any) -> None:
        if self.up is False:
            self._log.info("device link recovered", **details)
        elif self.up is None:
            self._log.info("device link up", **details)
        self.up = True
        self.last_error = ""

    def lost(self, error: str) -> None:
        if self.up is not False:
            self._log.warning("device link lost; retrying with backoff", error=error)
        self.up = False
        self.last_error = error

    def misconfigured(self, error: str) -> None:
        self._log.error("device misconfigured; not retrying until the agent restarts", error=error)
        self.up = False
        self.last_error = error

    def warning(self, event: str, **details: Any) -> None:
        self._log.warning(event, **details)

    def info(self, event: str, **details: Any) -> None:
        self._log.info(event, **details)


@dataclass(slots=True)
class Cached:
    value: Any
    quality: Quality
    at: float  # time.monotonic() of the update


class ValueCache:
    """Last value per field of a push protocol (OPC UA subscription, MQTT).
    A snapshot marks values older than ``stale_after_s`` (or all, while the
    link is down) stale."""

    def __init__(self, stale_after_s: float | None = None) -> None:
        self.stale_after_s = stale_after_s
        self._values: dict[str, Cached] = {}

    def put(self, name: str, value: Any, quality: Quality = Quality.GOOD) -> None:
        self._values[name] = Cached(value, quality, time.monotonic())

    def get(self, name: str) -> Cached | None:
        return self._values.get(name)

    def clear(self) -> None:
        self._values.clear()

    def snapshot(self, *, link_up: bool) -> tuple[dict[str, Any], dict[str, Quality]]:
        now = time.monotonic()
        values: dict[str, Any] = {}
        quality: dict[str, Quality] = {}
        for name, c in self._values.items():
            q = c.quality
            old = self.stale_after_s is not None and now - c.at > self.stale_after_s
            if q == Quality.GOOD and (old or not link_up):
                q = Quality.STALE
            values[name] = c.value
            quality[name] = q
        return values, quality


def make_sample(
    asset_id: str, ts: datetime, values: Mapping[str, Any], quality: Mapping[str, Quality]
) -> Sample:
    """A sample where a bad point carries no value (only its quality mark)."""
    kept = {k: v for k, v in values.items() if quality.get(k) != Quality.BAD}
    return build_sample(asset_id, ts, kept, quality)


class Supervised(Protocol):
    """An adapter whose link a background task keeps up (OPC UA, MQTT)."""

    _client: Any
    _task: asyncio.Task[None] | None
    _changed: asyncio.Event
    _misconfigured: Any

    def _supervise(self) -> Coroutine[Any, Any, None]: ...


async def start_supervised(adapter: Supervised, name: str, timeout_s: float) -> None:
    """Start the adapter's supervisor once (not after a misconfiguration) and
    wait up to ``timeout_s`` for its first connection or its verdict."""
    if adapter._task is None or adapter._task.done():
        if adapter._misconfigured is not None:
            raise adapter._misconfigured
        adapter._task = asyncio.create_task(adapter._supervise(), name=name)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while adapter._client is None and adapter._misconfigured is None:
                adapter._changed.clear()
                await adapter._changed.wait()


async def stop_supervised(adapter: Supervised) -> None:
    """Cancel the adapter's supervisor and wait until it has closed its link."""
    task, adapter._task = adapter._task, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
