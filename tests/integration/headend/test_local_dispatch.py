"""Local dispatches (written on site, reported by the agent) at the headend:
recorded once with source "local", their lifecycle from the agent's acks,
refused when malformed, not cancellable from the cloud."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    TestPki,
    db_enroller,
    demo_assets,
    dispatch_in_state,
    wait_for,
)

from gridpilot.cli.dispatch import timeline
from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.ops.embedded import EmbeddedPostgres
from gridpilot.ops.headend import Headend
from gridpilot.ops.processes import free_port
from gridpilot.ops.settings import Settings
from gridpilot.schema import db
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.times import ts_to_pb

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration


def report(asset_id: str = "bess-1", p_kw: float = 25.0, **kw: object) -> pb.LocalDispatch:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "dispatch_id": f"loc-{uuid.uuid4()}",
        "asset_id": asset_id,
        "p_kw": p_kw,
        "start": ts_to_pb(now),
        "end": ts_to_pb(now + timedelta(seconds=600)),
        "actor": "opcua:op1",
        "channel": "opcua",
    }
    fields.update(kw)
    return pb.LocalDispatch(**fields)  # type: ignore[arg-type]


def ack(r: pb.LocalDispatch, state: int, **kw: object) -> pb.AgentMessage:
    return pb.AgentMessage(
        dispatch_ack=pb.DispatchAck(
            dispatch_id=r.dispatch_id,
            asset_id=r.asset_id,
            state=state,  # type: ignore[arg-type]
            time=ts_to_pb(datetime.now(UTC)),
            **kw,  # type: ignore[arg-type]
        )
    )


def recorded(agent: ScriptedAgent, dispatch_id: str) -> list[pb.LocalDispatchRecorded]:
    return [m for m in agent.of("local_dispatch_recorded") if m.dispatch_id == dispatch_id]


async def test_a_local_dispatch_is_recorded_once_and_follows_the_agents_acks(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = report()
    await scripted_agent.send(pb.AgentMessage(local_dispatch=r))
    await scripted_agent.send(ack(r, pb.ACK_STATE_ACCEPTED))
    await scripted_agent.send(ack(r, pb.ACK_STATE_APPLIED, applied_p_kw=25.0))
    await wait_for(lambda: recorded(scripted_agent, r.dispatch_id))
    assert recorded(scripted_agent, r.dispatch_id)[0].refused == ""
    api = headend.api
    await wait_for(lambda: dispatch_in_state(api, r.dispatch_id, "active"))

    # re-sent after a reconnect (the agent had no confirmation): still one dispatch
    await scripted_agent.send(pb.AgentMessage(local_dispatch=r))
    await wait_for(lambda: len(recorded(scripted_agent, r.dispatch_id)) == 2)
    listed = (await api.get("/api/v1/dispatches", params={"source": "local"})).json()
    assert [d["id"] for d in listed] == [r.dispatch_id]
    assert (await api.get("/api/v1/dispatches", params={"source": "cloud"})).json() == []

    body = (await api.get(f"/api/v1/dispatches/{r.dispatch_id}")).json()
    assert body["source"] == "local" and body["asset_id"] == "bess-1"
    assert body["submitted_by"] == "opcua:op1@gw-1" and body["p_kw"] == 25.0
    assert body["applied_p_kw"] == 25.0 and body["duration_s"] == 600
    steps = [(t["to_state"], t["actor"]) for t in body["transitions"]]
    assert steps == [
        ("submitted", "opcua:op1@gw-1"),
        ("sent", "agent"),
        ("acked", "agent"),
        ("active", "agent"),
    ]

    assert "(written on site, by opcua:op1@gw-1)" in timeline(body)

    # the cloud cannot cancel it: the local operator ends it on site
    refused = await api.post(f"/api/v1/dispatches/{r.dispatch_id}/cancel", json={})
    assert refused.status_code == 409 and "on site" in refused.json()["message"]

    await scripted_agent.send(
        ack(r, pb.ACK_STATE_RELEASED, reason=pb.REASON_CODE_CANCELLED_BY_OPERATOR)
    )
    await wait_for(lambda: dispatch_in_state(api, r.dispatch_id, "cancelled"))
    ended = (await api.get(f"/api/v1/dispatches/{r.dispatch_id}")).json()
    assert ended["reason"] == "CANCELLED_BY_OPERATOR"


async def test_a_local_dispatch_taken_over_by_the_cloud_ends_superseded(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    """cloud_priority at the agent: the cloud's dispatch is not refused by the
    headend because a local one is live (the agent arbitrates)."""
    await scripted_agent.connect(demo_assets())
    r = report(p_kw=30)
    await scripted_agent.send(pb.AgentMessage(local_dispatch=r))
    await scripted_agent.send(ack(r, pb.ACK_STATE_APPLIED, applied_p_kw=30.0))
    api = headend.api
    await wait_for(lambda: dispatch_in_state(api, r.dispatch_id, "active"))
    cloud = await api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": -10, "duration_s": 60}
    )
    assert cloud.status_code == 201, cloud.text
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    assert sp.dispatch_id == cloud.json()["id"]
    await scripted_agent.send(ack(r, pb.ACK_STATE_RELEASED, reason=pb.REASON_CODE_SUPERSEDED))
    await wait_for(lambda: dispatch_in_state(api, r.dispatch_id, "cancelled"))
    ended = (await api.get(f"/api/v1/dispatches/{r.dispatch_id}")).json()
    assert ended["reason"] == "SUPERSEDED"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"asset_id": "not-mine"}, "asset_id"),
        ({"dispatch_id": "dsp-123"}, "dispatch_id"),
        ({"p_kw": float("nan")}, "p_kw"),
        ({"end": ts_to_pb(datetime.now(UTC) - timedelta(seconds=5))}, "end"),
    ],
)
async def test_a_malformed_local_dispatch_is_refused_naming_the_field_and_not_recorded(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, change: dict, field: str
) -> None:
    await scripted_agent.connect(demo_assets())
    r = report(**change)
    await scripted_agent.send(pb.AgentMessage(local_dispatch=r))
    answer = await wait_for(lambda: recorded(scripted_agent, r.dispatch_id))
    assert answer[0].refused.startswith(f"local_dispatch.{field}:")
    assert not scripted_agent.ended  # the stream goes on
    assert (await headend.api.get("/api/v1/dispatches", params={"source": "local"})).json() == []
    r2 = report()  # and the next good one is recorded
    await scripted_agent.send(pb.AgentMessage(local_dispatch=r2))
    assert (await wait_for(lambda: recorded(scripted_agent, r2.dispatch_id)))[0].refused == ""


def real_site(address: str, pki: TestPki, gateway_id: str, **extra: Any) -> SiteConfig:
    issued = pki.gateway(gateway_id)
    return SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": gateway_id,
            "site": {"id": f"{gateway_id}-site", "timezone": "UTC"},
            "headend": {
                "address": address,
                "ca_file": str(pki.pki.ca_file),
                "cert_file": str(issued.cert_file),
                "key_file": str(issued.key_file),
            },
            "telemetry_interval_s": 0.2,
            "heartbeat_interval_s": 0.5,
            "assets": [
                {
                    "id": f"{gateway_id}-bess",
                    "type": "bess",
                    "limits": {"p_min_kw": -100, "p_max_kw": 100},
                    "capacity_kwh": 200,
                    "default_p_kw": 0,
                    "device": {"kind": "simulated"},
                }
            ],
            **extra,
        }
    )


async def test_a_local_dispatch_made_while_the_headend_database_is_down_is_recorded_after(
    tmp_path: Path, temporal_env: WorkflowEnvironment, test_pki: TestPki, task_queue: str
) -> None:
    """The fault: the headend's PostgreSQL stops while a live agent's operator
    writes a setpoint. The agent applies it anyway; the headend cannot record
    the report, ends the stream, and the agent re-sends it on the session it
    gets once the database is back: recorded once, nothing lost."""
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    pg.start()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE gridpilot")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=pg.url("gridpilot"),
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=task_queue,
        headend_id="lf-headend",
        api_port=free_port(),
        grpc_listen=f"127.0.0.1:{free_port()}",
        grpc_tls_cert_file=test_pki.headend.cert_file,
        grpc_tls_key_file=test_pki.headend.key_file,
        grpc_client_ca_file=test_pki.pki.ca_file,
    )
    db.upgrade(settings.database_url)
    await db_enroller(settings.database_url)("lf-gw", "lf-gw-site")
    headend = Headend(settings)
    served = asyncio.create_task(headend.run())
    agent = EdgeAgent(real_site(settings.grpc_listen, test_pki, "lf-gw"))
    running = asyncio.create_task(agent.run())
    try:
        await wait_for(lambda: agent.connected, timeout=60)
        pg.stop()
        result = await agent.local.setpoint("lf-gw-bess", 20.0, "opcua:night-op")
        assert result.outcome == "applied"  # on site nothing waits for the cloud
        await wait_for(lambda: not agent.connected, timeout=20)  # report unrecorded: stream ended
        assert len(agent.local_reports) == 1
        await asyncio.sleep(2)
        pg.start()
        await wait_for(lambda: len(agent.local_reports) == 0, timeout=60)
        with psycopg.connect(pg.url("gridpilot")) as conn:
            rows = conn.execute("SELECT id, source, submitted_by, p_kw FROM dispatches").fetchall()
            assert rows == [(result.dispatch_id, "local", "opcua:night-op@lf-gw", 20.0)]

            def state() -> str:
                return conn.execute("SELECT state FROM dispatches").fetchone()[0]  # type: ignore[index]

            await wait_for(lambda: state() == "active", timeout=30)
    finally:
        agent.stop()
        await asyncio.wait_for(running, 20)
        headend.stop()
        await asyncio.wait_for(served, 30)
        pg.stop()
