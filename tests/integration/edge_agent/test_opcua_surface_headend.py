"""SCADA → the agent's OPC UA surface → the real headend: what a local
operator writes is a local dispatch in the cloud record, the telemetry a
SCADA reads is the headend's, and cloud vs local follows the site's policy.

A real headend (mTLS, Temporal, PostgreSQL), a real EdgeAgent with a
simulated battery and its OPC UA server, an asyncua client with a trusted
certificate (Basic256Sha256 SignAndEncrypt) and an operator login.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from gp_testing import RunningHeadend, wait_for
from test_opcua_surface import CLIENT_URI, make_client_cert

from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.security.passwords import hash_password

pytestmark = pytest.mark.integration

NS = "urn:test:surface-headend"
BESS = "Sites/sh-site/sh-bess"


def config(headend: RunningHeadend, arbitration: str) -> SiteConfig:
    assert headend.pki is not None
    issued = headend.pki.gateway("sh-gw")
    return SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": "sh-gw",
            "site": {"id": "sh-site", "timezone": "UTC"},
            "headend": {
                "address": headend.grpc_address,
                "ca_file": str(headend.pki.pki.ca_file),
                "cert_file": str(issued.cert_file),
                "key_file": str(issued.key_file),
            },
            "telemetry_interval_s": 0.2,
            "heartbeat_interval_s": 1,
            "opcua_server": {
                "endpoint": "opc.tcp://127.0.0.1:0/gridpilot/",
                "namespace_uri": NS,
                "users": [
                    {
                        "name": "op",
                        "role": "operator",
                        "password_hash": hash_password("op-secret", n=2**10),
                    }
                ],
                "publish_interval_s": 0.2,
                "arbitration": arbitration,
            },
            "assets": [
                {
                    "id": "sh-bess",
                    "type": "bess",
                    "limits": {"p_min_kw": -100, "p_max_kw": 100},
                    "default_p_kw": 0,
                    "capacity_kwh": 200,
                    "device": {"kind": "simulated", "initial_soc_pct": 60},
                }
            ],
        }
    )


class Scada:
    def __init__(self, agent: EdgeAgent, client: Client) -> None:
        self.agent = agent
        self.client = client

    async def read(self, path: str) -> ua.DataValue:
        node = ua.NodeId(f"{BESS}/{path}", 2)
        return (await self.client.uaclient.read_attributes([node], ua.AttributeIds.Value))[0]

    async def value(self, path: str) -> Any:
        return (await self.read(path)).Value.Value

    async def setpoint(self, p_kw: float) -> ua.StatusCode:
        node = ua.NodeId(f"{BESS}/Control/SetpointKw", 2)
        dv = ua.DataValue(ua.Variant(p_kw, ua.VariantType.Double))
        return (await self.client.uaclient.write_attributes([node], [dv]))[0]


@pytest.fixture
async def scada(
    headend: RunningHeadend, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Scada]:
    await headend.enroll("sh-gw", "sh-site")
    agent = EdgeAgent(config(headend, request.param), state_dir=tmp_path / "state")
    assert agent.opcua is not None
    cert, key = await make_client_cert(tmp_path / "client", "scada")
    agent.opcua.paths.trusted_dir.mkdir(parents=True)
    shutil.copy(cert, agent.opcua.paths.trusted_dir / cert.name)
    run = asyncio.create_task(agent.run())
    client: Client | None = None
    try:
        await wait_for(lambda: (agent.opcua and agent.opcua.port) or run.done(), timeout=30)
        assert not run.done()
        await wait_for(lambda: agent.connected, timeout=30)
        client = Client(agent.opcua.endpoint_url, timeout=5)
        client.application_uri = CLIENT_URI
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        client.set_user("op")
        client.set_password("op-secret")
        await client.connect()
        yield Scada(agent, client)
    finally:
        if client is not None:
            await client.disconnect()
        agent.stop()
        await asyncio.wait_for(run, 20)


async def dispatches(headend: RunningHeadend, **params: str) -> list[dict[str, Any]]:
    r = await headend.api.get("/api/v1/dispatches", params={"asset_id": "sh-bess", **params})
    assert r.status_code == 200, r.text
    return list(r.json())


@pytest.mark.parametrize("scada", ["cloud_priority"], indirect=True)
async def test_scada_sees_the_headends_telemetry_and_its_write_is_a_local_dispatch_until_the_cloud_takes_over(  # noqa: E501
    headend: RunningHeadend, scada: Scada
) -> None:
    # what SCADA reads is what the headend stored from that source time on. The
    # surface stamps a value with the time it changed (a steady soc keeps its
    # first sample's time), and the uplink takes the poller's latest sample per
    # batch, so a busy agent may skip that very sample: the first stored one at
    # or after it carries the same value.
    async def same_sample() -> bool:
        soc = await scada.read("Telemetry/soc_pct")
        at = soc.SourceTimestamp
        if at is None or not soc.StatusCode.is_good():
            return False
        r = await headend.api.get(
            "/api/v1/telemetry",
            params={
                "asset_id": "sh-bess",
                "start": at.isoformat(),
                "end": (at + timedelta(seconds=10)).isoformat(),
            },
        )
        rows = r.json() if r.status_code == 200 else []
        return bool(rows) and rows[0]["soc_pct"] == soc.Value.Value

    await wait_for(same_sample, timeout=30)

    assert (await scada.setpoint(40.0)).is_good()
    assert scada.agent.local.view("sh-bess").setpoint_actual_kw == 40.0  # at the device
    local = (await wait_for(lambda: dispatches(headend, source="local"), timeout=30))[0]
    assert local["id"].startswith("loc-") and local["submitted_by"] == "opcua:op@sh-gw"
    assert local["p_kw"] == 40.0
    await wait_for(lambda: _state(headend, local["id"], "active"), timeout=30)
    assert await scada.value("Control/Mode") == "local"
    assert await scada.value("Control/ActiveDispatchId") == local["id"]

    # a cloud dispatch arrives: cloud_priority, the cloud takes the asset over
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "sh-bess", "p_kw": -30, "duration_s": 120}
    )
    assert r.status_code == 201, r.text
    cloud_id = r.json()["id"]
    await wait_for(lambda: _state(headend, cloud_id, "active"), timeout=30)
    await wait_for(lambda: _state(headend, local["id"], "cancelled"), timeout=30)
    ended = (await headend.api.get(f"/api/v1/dispatches/{local['id']}")).json()
    assert ended["reason"] == "SUPERSEDED" and cloud_id in ended["detail"]

    async def scada_sees_cloud() -> bool:
        return (await scada.value("Control/Mode")) == "cloud" and (
            await scada.value("Control/ActiveDispatchId")
        ) == cloud_id

    await wait_for(scada_sees_cloud, timeout=10)
    assert await scada.value("Control/SetpointActualKw") == -30.0

    # while the cloud holds it, a local write is refused, and that is on record too
    status = await scada.setpoint(10.0)
    assert status.value == ua.StatusCodes.BadLocked
    assert scada.agent.local.view("sh-bess").setpoint_actual_kw == -30.0
    assert "PRIORITY_CONFLICT" in await scada.value("Control/CommandStatus")

    async def refused_on_record() -> bool:
        rows = await dispatches(headend, source="local", state="failed")
        return bool(rows) and rows[0]["reason"] == "PRIORITY_CONFLICT"

    await wait_for(refused_on_record, timeout=30)


@pytest.mark.parametrize("scada", ["local_priority"], indirect=True)
async def test_local_priority_a_cloud_dispatch_during_a_local_one_is_refused_with_local_control(
    headend: RunningHeadend, scada: Scada
) -> None:
    assert (await scada.setpoint(25.0)).is_good()
    local = (await wait_for(lambda: dispatches(headend, source="local"), timeout=30))[0]
    await wait_for(lambda: _state(headend, local["id"], "active"), timeout=30)

    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "sh-bess", "p_kw": -30, "duration_s": 120}
    )
    assert r.status_code == 201, r.text  # the headend leaves arbitration to the site
    cloud_id = r.json()["id"]
    await wait_for(lambda: _state(headend, cloud_id, "failed"), timeout=30)
    refused = (await headend.api.get(f"/api/v1/dispatches/{cloud_id}")).json()
    assert refused["reason"] == "LOCAL_CONTROL" and "local_priority" in refused["detail"]
    assert scada.agent.local.view("sh-bess").setpoint_actual_kw == 25.0
    assert await scada.value("Control/Mode") == "local"
    assert (await headend.api.get(f"/api/v1/dispatches/{local['id']}")).json()["state"] == (
        "active"
    )


async def _state(headend: RunningHeadend, dispatch_id: str, state: str) -> bool:
    r = await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")
    return r.status_code == 200 and r.json()["state"] == state
