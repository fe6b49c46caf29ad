"""Priority, supersede, scheduling and evidence through the REST API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agent_ack,
    demo_assets,
    dispatch_in_state,
    now_pb,
    wait_for,
)

from gridpilot.cli.dispatch import timeline
from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration


async def _activate(agent: ScriptedAgent, index: int, p_kw: float) -> pb.Setpoint:
    sp = await wait_for(lambda: len(agent.of("setpoint")) > index and agent.of("setpoint")[index])
    await agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
    await agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=p_kw))
    return sp


async def test_equal_priority_supersedes_and_lower_is_refused_with_409(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    api = headend.api
    first = (
        await api.post(
            "/api/v1/dispatches",
            json={"asset_id": "bess-1", "p_kw": 10, "duration_s": 600, "priority": 5},
        )
    ).json()
    await _activate(scripted_agent, 0, 10)
    await wait_for(lambda: dispatch_in_state(api, first["id"], "active"))

    low = await api.post(
        "/api/v1/dispatches",
        json={"asset_id": "bess-1", "p_kw": 20, "duration_s": 60, "priority": 4},
    )
    assert low.status_code == 409
    assert low.json()["field"] == "priority"
    assert first["id"] in low.json()["message"]

    second = (
        await api.post(
            "/api/v1/dispatches",
            json={"asset_id": "bess-1", "p_kw": 30, "duration_s": 60, "priority": 5},
        )
    ).json()
    sp = await wait_for(
        lambda: len(scripted_agent.of("setpoint")) > 1 and scripted_agent.of("setpoint")[1]
    )
    assert sp.dispatch_id == second["id"]
    # Claimed, but the first setpoint still runs at the agent until the second takes over.
    old = (await api.get(f"/api/v1/dispatches/{first['id']}")).json()
    assert (old["state"], old["superseded_by"]) == ("active", second["id"])
    # What a real agent does (edge_agent/control.py): accept the new setpoint, release
    # the one it replaces as SUPERSEDED, apply the new one.
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
    first_sp = scripted_agent.of("setpoint")[0]
    await scripted_agent.send(
        agent_ack(
            first_sp,
            pb.ACK_STATE_RELEASED,
            reason=pb.REASON_CODE_SUPERSEDED,
            detail=f"superseded by {second['id']}",
        )
    )
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=30))
    await wait_for(lambda: dispatch_in_state(api, first["id"], "cancelled"))
    old = (await api.get(f"/api/v1/dispatches/{first['id']}")).json()
    assert old["reason"] == "SUPERSEDED"
    assert old["superseded_by"] == second["id"]
    assert old["transitions"][-1]["actor"] == "agent"
    assert old["transitions"][-1]["detail"] == f"superseded by {second['id']}"
    await wait_for(lambda: dispatch_in_state(api, second["id"], "active"))
    # The old setpoint is replaced at the agent, not released (no dip to default).
    assert [r.dispatch_id for r in scripted_agent.of("release")] == []


async def test_windows_that_do_not_overlap_do_not_compete(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    later = datetime.now(UTC) + timedelta(hours=2)
    scheduled = await headend.api.post(
        "/api/v1/dispatches",
        json={
            "asset_id": "bess-1",
            "p_kw": 10,
            "duration_s": 600,
            "priority": 50,
            "start_at": later.isoformat(),
        },
    )
    assert scheduled.status_code == 201
    now = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 5, "duration_s": 60}
    )
    assert now.status_code == 201
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    assert sp.dispatch_id == now.json()["id"]  # the scheduled one waits for its start
    state = (await headend.api.get(f"/api/v1/dispatches/{scheduled.json()['id']}")).json()
    assert state["state"] == "submitted"
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    listed = (await headend.api.get("/api/v1/dispatches", params={"since": since})).json()
    assert len(listed) == 2
    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await headend.api.get("/api/v1/dispatches", params={"since": future})).json() == []


async def test_completed_dispatch_shows_evidence_from_telemetry(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 40, "duration_s": 3}
    )
    dispatch_id = r.json()["id"]
    sp = await _activate(scripted_agent, 0, 40)
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "active"))
    for seq, p_kw in enumerate([20.0, 39.8, 40.1], start=1):
        sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=p_kw)
        await scripted_agent.send(
            pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=seq, samples=[sample]))
        )
        await wait_for(lambda n=seq: len(scripted_agent.of("telemetry_ack")) >= n)
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_COMPLETED))
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "complete"))
    d = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
    ev = d["evidence"]
    assert ev["samples"] == 3
    assert ev["setpoint_kw"] == 40
    assert ev["max_abs_deviation_kw"] == pytest.approx(20.0)
    assert ev["mean_p_kw"] == pytest.approx((20.0 + 39.8 + 40.1) / 3)
    assert ev["time_to_target_s"] is not None and ev["time_to_target_s"] > 0
    text = timeline(d)
    assert "complete" in text and "evidence" in text and "target reached after" in text
