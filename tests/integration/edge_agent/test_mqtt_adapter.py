"""The MQTT adapter and the telemetry publisher against a real Mosquitto:
our own on a free port when the binary exists, else one on 127.0.0.1:1883,
else these tests skip."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import pytest
from gp_testing import wait_for as eventually
from gp_testing.mqtt_broker import mosquitto

from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.edge_agent.adapters import DeviceReadOnly, DeviceUnavailable
from gridpilot.edge_agent.adapters.mqtt import MqttAdapter
from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.config import MqttDevice, MqttPublish
from gridpilot.edge_agent.telemetry.publish import MqttTelemetryPublisher
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with mosquitto(tmp_path_factory.mktemp("mqtt"), free_port()) as port:
        yield port


def mqtt(port: int, points: list[dict[str, Any]], **kw: Any) -> MqttAdapter:
    cfg = MqttDevice.model_validate(
        {"kind": "mqtt", "host": "127.0.0.1", "port": port, "points": points, **kw}
    )
    return MqttAdapter("meter", cfg, clock=SystemClock(), rng=random.Random(1))


async def publish(port: int, topic: str, payload: str | bytes, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port=port) as c:
        await c.publish(topic, payload, qos=1, retain=retain)


async def test_json_payloads_map_to_normalized_fields_and_go_stale(broker: int) -> None:
    topic = f"t{free_port()}"
    a = mqtt(
        broker,
        [
            {"field": "p_kw", "topic": f"{topic}/state", "path": "power.active_w", "scale": 0.001},
            {"field": "voltage_v", "topic": f"{topic}/state", "path": "voltage.1"},
            {"field": "state", "topic": f"{topic}/state", "path": "mode", "enum": {2: "producing"}},
            {"field": "energy_export_kwh", "topic": f"{topic}/export_wh", "scale": 0.001},
        ],
        stale_after_s=0.6,
    )
    try:
        await a.connect()
        await publish(
            broker,
            f"{topic}/state",
            json.dumps({"power": {"active_w": 41250}, "voltage": [231.2, 230.8], "mode": 2}),
        )
        await publish(broker, f"{topic}/export_wh", b"123456")  # a plain payload

        async def complete() -> Sample | None:
            s = await a.read()
            return s if s.details.get("energy_export_kwh") is not None and s.p_kw else None

        s = await eventually(complete)
        assert (s.p_kw, s.voltage_v, s.state) == (41.25, 230.8, "producing")
        assert s.details == {"energy_export_kwh": 123.456}
        await eventually(lambda: a.cache.snapshot(link_up=True)[1]["p_kw"] == "stale")
        assert (await a.read()).details["quality"] == {
            "energy_export_kwh": "stale",
            "p_kw": "stale",
            "state": "stale",
            "voltage_v": "stale",
        }
        with pytest.raises(DeviceReadOnly):
            await a.write(10)
    finally:
        await a.close()


async def test_setpoint_is_published_to_its_topic(broker: int) -> None:
    topic = f"t{free_port()}/cmd"
    a = mqtt(
        broker,
        [{"field": "setpoint_kw", "topic": topic, "path": "limit.kw", "scale": 1, "mode": "w"}],
    )
    got: list[Any] = []
    async with aiomqtt.Client("127.0.0.1", port=broker) as listener:
        await listener.subscribe(topic, qos=1)
        try:
            await a.connect()
            assert await a.write(-7.5) == -7.5
            async with asyncio.timeout(5):
                async for message in listener.messages:
                    got.append(json.loads(message.payload))  # type: ignore[arg-type]
                    break
        finally:
            await a.close()
    assert got == [{"limit": {"kw": -7.5}}]


async def test_unreachable_broker_is_unavailable_not_misconfigured() -> None:
    a = mqtt(free_port(), [{"field": "p_kw", "topic": "x"}], timeout_s=0.5)
    try:
        with pytest.raises(DeviceUnavailable, match="cannot reach"):
            await a.connect()
    finally:
        await a.close()


async def test_publisher_sends_normalized_telemetry_as_json(broker: int) -> None:
    cfg = MqttPublish.model_validate(
        {"host": "127.0.0.1", "port": broker, "topic_prefix": "gp/{site_id}"}
    )
    pub = MqttTelemetryPublisher(cfg, site_id=f"s{free_port()}", gateway_id="gw")
    sample = Sample(
        "bess-1",
        datetime(2026, 1, 1, tzinfo=UTC),
        p_kw=-5.0,
        state="charging",
        details={"soh_pct": 97.0, "quality": {"soh_pct": "stale"}},
    )
    async with aiomqtt.Client("127.0.0.1", port=broker) as listener:
        await listener.subscribe(pub.topic("+"), qos=0)
        task = asyncio.create_task(pub.run())
        try:
            pub.offer([sample])
            async with asyncio.timeout(5):
                async for message in listener.messages:
                    body = json.loads(message.payload)  # type: ignore[arg-type]
                    assert str(message.topic) == pub.topic("bess-1")
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert body == {
        "asset_id": "bess-1",
        "ts": "2026-01-01T00:00:00+00:00",
        "p_kw": -5.0,
        "state": "charging",
        "details": {"soh_pct": 97.0, "quality": {"soh_pct": "stale"}},
    }


async def test_agent_publishes_its_samples_when_mqtt_publish_is_configured(broker: int) -> None:
    site = f"s{free_port()}"
    cfg = SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": "gw-pub",
            "site": {"id": site},
            "headend": {"address": f"127.0.0.1:{free_port()}", "insecure": True},  # nobody
            "telemetry_interval_s": 0.1,
            "mqtt_publish": {"host": "127.0.0.1", "port": broker},
            "assets": [
                {
                    "id": "bess-1",
                    "type": "bess",
                    "limits": {"p_min_kw": -10, "p_max_kw": 10},
                    "default_p_kw": 0,
                    "capacity_kwh": 20,
                    "device": {"kind": "simulated"},
                }
            ],
        }
    )
    agent = EdgeAgent(cfg)
    async with aiomqtt.Client("127.0.0.1", port=broker) as listener:
        await listener.subscribe(f"gridpilot/{site}/bess-1/telemetry")
        run = asyncio.create_task(agent.run())
        try:
            async with asyncio.timeout(10):
                async for message in listener.messages:
                    body = json.loads(message.payload)  # type: ignore[arg-type]
                    break
        finally:
            agent.stop()
            await asyncio.wait_for(run, 20)
    assert body["asset_id"] == "bess-1" and body["soc_pct"] == 50.0
    assert "soh_pct" in body["details"]
