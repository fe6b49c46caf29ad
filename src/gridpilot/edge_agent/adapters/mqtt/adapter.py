"""MQTT adapter: values arrive on topics (JSON or plain payloads), the last
one per field is cached, and a snapshot marks values older than
``stale_after_s`` stale. A setpoint is published to its point's topic."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiomqtt

from gridpilot.core.telemetry import Sample
from gridpilot.core.telemetry_fields import Quality

from ...clock import Clock
from ...config import MqttDevice, MqttPoint
from ..base import DeviceMisconfigured, DeviceReadOnly, DeviceUnavailable, DeviceWriteFailed
from ..common import (
    Backoff,
    LinkLog,
    ValueCache,
    make_sample,
    normalize,
    raw_for,
    start_supervised,
    stop_supervised,
    tidy,
)
from .broker import build_payload, classify, extract, make_client, missing, parse_payload


class MqttAdapter:
    def __init__(
        self,
        asset_id: str,
        cfg: MqttDevice,
        *,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.asset_id = asset_id
        self.cfg = cfg
        self.endpoint = f"mqtt://{cfg.host}:{cfg.port}"
        self._clock = clock
        self._rng = rng
        self.link = LinkLog(asset_id, "mqtt", self.endpoint)
        self.cache = ValueCache(cfg.stale_after_s)
        self._by_topic: dict[str, list[MqttPoint]] = {}
        for p in cfg.points:
            if p.readable:
                self._by_topic.setdefault(p.topic, []).append(p)
        self._setpoint = next((p for p in cfg.points if p.writable), None)
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._misconfigured: DeviceMisconfigured | None = None

    async def connect(self) -> None:
        await start_supervised(self, f"mqtt:{self.asset_id}", self.cfg.timeout_s)
        self._check_up()

    async def read(self) -> Sample:
        self._check_up()
        values, quality = self.cache.snapshot(link_up=True)
        return make_sample(self.asset_id, self._clock.now(), values, quality)

    async def write(self, p_kw: float) -> float:
        point = self._setpoint
        if point is None:
            raise DeviceReadOnly(f"{self.asset_id}: no point with field setpoint_kw and mode w/rw")
        self._check_up()
        assert self._client is not None
        raw = tidy(raw_for(point, p_kw))
        try:
            await self._client.publish(
                point.topic,
                build_payload(point.path, raw),
                qos=self.cfg.qos,
                timeout=self.cfg.timeout_s,
            )
        except Exception as exc:
            raise DeviceWriteFailed(classify(exc, self.endpoint)[1]) from None
        return tidy(raw * point.scale + point.offset)

    async def close(self) -> None:
        await stop_supervised(self)

    # ----------------------------------------------------------- supervisor

    async def _supervise(self) -> None:
        cap = self.cfg.reconnect_backoff_max_s
        backoff = Backoff(min(0.5, cap), cap, rng=self._rng)
        while True:
            try:
                async with make_client(self.cfg, "gridpilot") as client:
                    for topic in self._by_topic:
                        await client.subscribe(topic, qos=self.cfg.qos, timeout=self.cfg.timeout_s)
                    self._set_client(client)
                    self.link.connected()
                    backoff.reset()
                    async for message in client.messages:
                        self._on_message(str(message.topic), message.payload)
                raise aiomqtt.MqttError("the broker closed the connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                misconfigured, msg = classify(exc, self.endpoint)
                if misconfigured:
                    self._misconfigured = DeviceMisconfigured(msg)
                    self.link.misconfigured(msg)
                    return
                self.link.lost(msg)
            finally:
                self._set_client(None)
            await asyncio.sleep(backoff.next_delay())

    def _set_client(self, client: aiomqtt.Client | None) -> None:
        self._client = client
        self._changed.set()

    def _on_message(self, topic: str, payload: Any) -> None:
        document = parse_payload(payload)
        for point in self._by_topic.get(topic, ()):
            raw = extract(document, point.path)
            if missing(raw):
                continue
            if isinstance(raw, str) and point.enum is None:
                try:  # "12.5" in a JSON string is still a number
                    raw = float(raw)
                except ValueError:
                    pass
            if isinstance(raw, dict | list):
                value, quality = None, Quality.BAD
            else:
                value, quality = normalize(point, raw)
            self.cache.put(point.field, value, quality)

    def _check_up(self) -> None:
        if self._misconfigured is not None:
            raise self._misconfigured
        if self._client is None:
            raise DeviceUnavailable(self.link.last_error or f"connecting to {self.endpoint}")
