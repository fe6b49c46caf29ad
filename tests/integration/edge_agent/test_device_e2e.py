"""Device -> real EdgeAgent -> headend -> REST, and REST dispatch -> agent ->
the device's register / node: a BESS over Modbus and an EV charger over
OPC UA, both on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from gp_testing import RunningHeadend, wait_for
from gp_testing.modbus_peer import ModbusPeer
from gp_testing.opcua_peer import NS_URI, OpcUaPeer

from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.edge_agent.adapters.modbus.codec import decode, encode
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration


def site(headend: RunningHeadend, modbus_port: int, opcua_url: str) -> SiteConfig:
    link: dict[str, Any] = {"address": headend.grpc_address, "insecure": True}
    if headend.pki is not None:  # the headend wants mutual TLS
        issued = headend.pki.gateway("e2e-gw")
        link = {
            "address": headend.grpc_address,
            "ca_file": str(headend.pki.pki.ca_file),
            "cert_file": str(issued.cert_file),
            "key_file": str(issued.key_file),
        }
    nsu = f"nsu={NS_URI};s="
    return SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": "e2e-gw",
            "site": {"id": "e2e-site", "name": "E2E"},
            "headend": link,
            "telemetry_interval_s": 0.2,
            "heartbeat_interval_s": 1,
            "assets": [
                {
                    "id": "bess-mb",
                    "type": "bess",
                    "limits": {"p_min_kw": -100, "p_max_kw": 100},
                    "default_p_kw": 0,
                    "capacity_kwh": 200,
                    "device": {
                        "kind": "modbus",
                        "host": "127.0.0.1",
                        "port": modbus_port,
                        "points": [
                            {"field": "p_kw", "address": 0, "type": "int16", "scale": 0.1},
                            {"field": "soc_pct", "address": 1, "scale": 0.1},
                            {"field": "soh_pct", "address": 2, "scale": 0.1},
                            {
                                "field": "setpoint_kw",
                                "address": 10,
                                "type": "int32",
                                "scale": 0.1,
                                "mode": "rw",
                            },
                        ],
                    },
                },
                {
                    "id": "ev-ua",
                    "type": "ev_charger",
                    "limits": {"p_min_kw": -22, "p_max_kw": 0},
                    "default_p_kw": -22,
                    "device": {
                        "kind": "opcua",
                        "url": opcua_url,
                        "publishing_interval_ms": 100,
                        "points": [
                            {"field": "p_kw", "node": f"{nsu}EV1.Power_W", "scale": 0.001},
                            {"field": "session_state", "node": f"{nsu}EV1.State"},
                            {
                                "field": "setpoint_kw",
                                "node": f"{nsu}EV1.PowerSetpoint_kW",
                                "mode": "w",
                            },
                        ],
                    },
                },
            ],
        }
    )


async def latest(headend: RunningHeadend, asset_id: str) -> dict[str, Any] | None:
    r = await headend.api.get(f"/api/v1/assets/{asset_id}/telemetry/latest")
    return r.json() if r.status_code == 200 else None


async def test_device_values_reach_rest_and_rest_dispatches_reach_the_devices(
    headend: RunningHeadend,
) -> None:
    mb = ModbusPeer(free_port())
    await mb.start()
    await mb.set("holding", 0, encode(-425, "int16") + [655, 981])
    ua_peer = OpcUaPeer(free_port())
    await ua_peer.start()
    await headend.enroll("e2e-gw", "e2e-site")
    agent = EdgeAgent(site(headend, mb.port, ua_peer.url), device_timeout_s=5)
    run = asyncio.create_task(agent.run())
    try:

        async def bess_seen() -> dict[str, Any] | None:
            body = await latest(headend, "bess-mb")
            return body if body and body["p_kw"] == -42.5 else None

        body = await wait_for(bess_seen, timeout=30)
        assert body["soc_pct"] == 65.5 and body["details"]["soh_pct"] == 98.1
        ev = await wait_for(lambda: latest(headend, "ev-ua"), timeout=30)
        assert ev["p_kw"] == -7.4 and ev["details"]["session_state"] == "Charging"

        r = await headend.api.post(
            "/api/v1/dispatches", json={"asset_id": "bess-mb", "p_kw": -37.5, "duration_s": 60}
        )
        assert r.status_code == 201, r.text

        async def register_holds() -> bool:
            return decode(await mb.get("holding", 10, 2), "int32") == -375

        await wait_for(register_holds, timeout=30)
        await wait_for(lambda: _state(headend, r.json()["id"], "active"), timeout=30)

        r = await headend.api.post(
            "/api/v1/dispatches", json={"asset_id": "ev-ua", "p_kw": -11, "duration_s": 60}
        )
        assert r.status_code == 201, r.text

        async def node_holds() -> bool:
            return await ua_peer.value("EV1.PowerSetpoint_kW") == -11.0

        await wait_for(node_holds, timeout=30)

        async def echoed() -> bool:
            body = await latest(headend, "bess-mb")
            return bool(body) and body["details"].get("setpoint_kw") == -37.5  # type: ignore[index]

        await wait_for(echoed, timeout=30)
    finally:
        agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 30)
        await ua_peer.stop()
        await mb.stop()


async def _state(headend: RunningHeadend, dispatch_id: str, state: str) -> bool:
    r = await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")
    return r.status_code == 200 and r.json()["state"] == state
