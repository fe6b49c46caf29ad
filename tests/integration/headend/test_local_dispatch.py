"""Local dispatches (written on site, reported by the agent) at the headend:
recorded once with source "local", their lifecycle from the agent's acks,
refused when malformed, not cancellable from the cloud."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, dispatch_in_state, wait_for

from gridpilot.ingest.convert import ts_to_pb
from gridpilot.schema.pb import agent_pb2 as pb

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
