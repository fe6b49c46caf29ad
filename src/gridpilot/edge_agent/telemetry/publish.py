"""Optional: publish the agent's normalized telemetry to an MQTT broker.

Best effort and bounded: only the newest sample per asset waits while the
broker is away (older ones are replaced, and counted), so a dead broker
never grows memory. The headend stream, not this, is the durable path.
Topic: ``<topic_prefix>/<asset_id>/telemetry``, payload: the sample as JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable
from typing import Any

from gridpilot.core.telemetry import CORE_FIELDS, Sample

from ..adapters.common import Backoff, LinkLog
from ..adapters.mqtt.broker import classify, make_client
from ..config import MqttPublish


def sample_json(sample: Sample) -> str:
    body: dict[str, Any] = {"asset_id": sample.asset_id, "ts": sample.ts.isoformat()}
    for name in CORE_FIELDS:
        value = getattr(sample, name)
        if value is not None:
            body[name] = value
    if sample.state is not None:
        body["state"] = sample.state
    body["details"] = sample.details
    return json.dumps(body, default=str, allow_nan=False)


class MqttTelemetryPublisher:
    def __init__(
        self, cfg: MqttPublish, *, site_id: str, gateway_id: str, rng: random.Random | None = None
    ) -> None:
        self.cfg = cfg
        self.prefix = cfg.topic_prefix.replace("{site_id}", site_id).rstrip("/")
        self.endpoint = f"mqtt://{cfg.host}:{cfg.port}"
        self.published = 0
        self.replaced = 0  # samples overwritten by a newer one before they left
        self._gateway_id = gateway_id
        self._pending: dict[str, Sample] = {}
        self._wake = asyncio.Event()
        self._rng = rng
        self._link = LinkLog(gateway_id, "mqtt-publish", self.endpoint)

    def topic(self, asset_id: str) -> str:
        return f"{self.prefix}/{asset_id}/telemetry"

    def offer(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            if s.asset_id in self._pending:
                self.replaced += 1
            self._pending[s.asset_id] = s
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff(0.5, 30.0, rng=self._rng)
        while True:
            try:
                async with make_client(self.cfg, f"{self._gateway_id}-pub") as client:
                    self._link.connected()
                    backoff.reset()
                    while True:
                        await self._wake.wait()
                        self._wake.clear()
                        while self._pending:
                            asset_id = next(iter(self._pending))
                            sample = self._pending[asset_id]
                            await client.publish(
                                self.topic(asset_id),
                                sample_json(sample),
                                qos=self.cfg.qos,
                                retain=self.cfg.retain,
                                timeout=self.cfg.timeout_s,
                            )
                            if self._pending.get(asset_id) is sample:  # not replaced meanwhile
                                del self._pending[asset_id]
                            self.published += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                misconfigured, message = classify(exc, self.endpoint)
                if misconfigured:
                    self._link.misconfigured(message)
                    return
                self._link.lost(message)
            await asyncio.sleep(backoff.next_delay())
