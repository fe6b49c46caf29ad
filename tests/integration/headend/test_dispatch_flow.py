"""REST → Temporal → agent stream → acks → transitions, end to end in process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agent_ack,
    agents_connected,
    demo_assets,
    dispatch_in_state,
    dispatch_up_to,
    wait_for,
)

from gridpilot.cli.dispatch import timeline
from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import TERMINAL_VALUES
from gridpilot.core.split import split
from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration


async def transitions(headend: RunningHeadend, dispatch_id: str) -> list[tuple[Any, ...]]:
    body = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
    return [(t["to_state"], t["reason"]) for t in body["transitions"]]


async def test_asset_dispatch_reaches_the_agent_and_records_every_transition_in_order(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": -40, "duration_s": 2}
    )
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["state"] == "submitted" and d["kind"] == "asset" and d["site_id"] == "site-1"
    assert r.headers["location"] == f"/api/v1/dispatches/{d['id']}"

    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    assert (sp.dispatch_id, sp.asset_id, sp.p_kw) == (d["id"], "bess-1", -40)
    assert sp.end.ToDatetime() > sp.start.ToDatetime()
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=-40))
    await wait_for(lambda: dispatch_in_state(headend.api, d["id"], "active"))
    await scripted_agent.send(
        agent_ack(sp, pb.ACK_STATE_COMPLETED, reason=pb.REASON_CODE_LEASE_ENDED)
    )
    await wait_for(lambda: dispatch_in_state(headend.api, d["id"], "complete"))
    body = (await headend.api.get(f"/api/v1/dispatches/{d['id']}")).json()
    assert [t["to_state"] for t in body["transitions"]] == [
        "submitted",
        "sent",
        "acked",
        "active",
        "complete",
    ]
    assert [t["seq"] for t in body["transitions"]] == [1, 2, 3, 4, 5]
    times = [t["at"] for t in body["transitions"]]
    assert times == sorted(times)
    assert body["applied_p_kw"] == -40
    listed = (await headend.api.get("/api/v1/dispatches", params={"state": "complete"})).json()
    assert [x["id"] for x in listed] == [d["id"]]
    # every ack is confirmed, naming it, so the agent stops re-sending it
    await wait_for(lambda: len(scripted_agent.of("dispatch_ack_received")) == 3)
    confirmed = scripted_agent.of("dispatch_ack_received")
    assert [(c.dispatch_id, c.state, c.refused) for c in confirmed] == [
        (d["id"], pb.ACK_STATE_ACCEPTED, ""),
        (d["id"], pb.ACK_STATE_APPLIED, ""),
        (d["id"], pb.ACK_STATE_COMPLETED, ""),
    ]
    assert all(c.HasField("time") for c in confirmed)


async def test_site_dispatch_splits_and_every_child_reaches_its_asset(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    body = {"site_id": "site-1", "p_kw": 90, "duration_s": 3}
    preview = (await headend.api.post("/api/v1/dispatches/preview", json=body)).json()
    assert preview["policy"] == "capacity_weighted_clamped/v1"
    expected = split(
        90,
        [
            Asset("bess-1", "site-1", AssetType.BESS, PowerLimits(-100, 100)),
            Asset("ev-1", "site-1", AssetType.EV_CHARGER, PowerLimits(-22, 0)),
            Asset("pv-1", "site-1", AssetType.PV, PowerLimits(0, 50)),
        ],
    )
    assert {a["asset_id"]: a["p_kw"] for a in preview["allocations"]} == {
        a.asset_id: a.p_kw for a in expected.allocations
    }

    r = await headend.api.post("/api/v1/dispatches", json=body)
    assert r.status_code == 201, r.text
    site_id = r.json()["id"]
    setpoints = await wait_for(
        lambda: len(scripted_agent.of("setpoint")) == 3 and scripted_agent.of("setpoint")
    )
    got = {sp.asset_id: (sp.dispatch_id, sp.p_kw) for sp in setpoints}
    assert got == {
        a["asset_id"]: (f"{site_id}.{a['asset_id']}", a["p_kw"]) for a in preview["allocations"]
    }
    for sp in setpoints:
        await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
        await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=sp.p_kw))
    await wait_for(lambda: dispatch_in_state(headend.api, site_id, "active"))
    for sp in setpoints:
        await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_COMPLETED))
    site = await wait_for(lambda: _ended(headend, site_id))
    assert site["state"] == "complete", json.dumps(site)
    assert site["policy"] == "capacity_weighted_clamped/v1"
    assert site["allocation"]["allocated_kw"] == 90
    assert sorted(site["children"]) == sorted(f"{site_id}.{a}" for a in got)
    assert [t["to_state"] for t in site["transitions"]] == [
        "submitted",
        "sent",
        "acked",
        "active",
        "complete",
    ]


async def _ended(headend: RunningHeadend, dispatch_id: str) -> dict[str, Any] | None:
    """The dispatch's record once it has ended, else None."""
    d: dict[str, Any] = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
    return d if d["state"] in TERMINAL_VALUES else None


async def test_both_targets_dispatch_the_asset_with_a_warning(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches",
        json={"asset_id": "pv-1", "site_id": "site-1", "p_kw": 10, "duration_s": 5},
    )
    assert r.status_code == 201
    d = r.json()
    assert d["kind"] == "asset" and d["asset_id"] == "pv-1"
    assert any("asset_id wins" in w for w in d["warnings"])
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    assert sp.asset_id == "pv-1"


async def test_rejected_setpoint_fails_with_the_agents_reason(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "ev-1", "p_kw": -10, "duration_s": 5}
    )
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    await scripted_agent.send(
        agent_ack(
            sp, pb.ACK_STATE_REJECTED, reason=pb.REASON_CODE_OUT_OF_LIMITS, detail="local limit"
        )
    )
    await wait_for(lambda: dispatch_in_state(headend.api, r.json()["id"], "failed"))
    assert (await transitions(headend, r.json()["id"]))[-1] == ("failed", "OUT_OF_LIMITS")


async def test_cancel_releases_the_asset_and_is_idempotent(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    dispatch_id, _ = await dispatch_up_to(headend.api, scripted_agent)
    c = await headend.api.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
    assert c.status_code == 202
    release = await wait_for(lambda: scripted_agent.first("release"))
    assert release.dispatch_id == dispatch_id
    assert release.reason == pb.REASON_CODE_CANCELLED_BY_OPERATOR
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "cancelled"))
    again = await headend.api.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
    assert again.status_code == 202 and again.json()["state"] == "cancelled"
    assert (await transitions(headend, dispatch_id))[-1] == ("cancelled", "CANCELLED_BY_OPERATOR")


async def test_agent_offline_expires_with_agent_offline(headend: RunningHeadend) -> None:
    agent = headend.agent()
    await agent.connect(demo_assets())
    await agent.close()
    await wait_for(lambda: agents_connected(headend.api, False), timeout=10)
    r = await headend.api.post(
        "/api/v1/dispatches",
        json={"asset_id": "bess-1", "p_kw": 5, "duration_s": 3},
    )
    dispatch_id = r.json()["id"]
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "expired"), timeout=20)
    assert (await transitions(headend, dispatch_id)) == [
        ("submitted", None),
        ("expired", "AGENT_OFFLINE"),
    ]


async def test_idempotency_key_returns_the_same_dispatch(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    body = {"asset_id": "bess-1", "p_kw": 5, "duration_s": 30}
    headers = {"Idempotency-Key": "order-42"}
    first = await headend.api.post("/api/v1/dispatches", json=body, headers=headers)
    second = await headend.api.post("/api/v1/dispatches", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    other = await headend.api.post("/api/v1/dispatches", json={**body, "p_kw": 6}, headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "conflict"
    await wait_for(lambda: scripted_agent.first("setpoint"))
    assert len(scripted_agent.of("setpoint")) == 1


async def test_what_the_agent_says_after_the_end_is_kept_as_late_acks(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    dispatch_id, sp = await dispatch_up_to(headend.api, scripted_agent)
    await headend.api.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
    await wait_for(lambda: scripted_agent.first("release"))
    await scripted_agent.send(
        agent_ack(sp, pb.ACK_STATE_RELEASED, reason=pb.REASON_CODE_CANCELLED_BY_OPERATOR)
    )
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "cancelled"))

    late = agent_ack(
        sp, pb.ACK_STATE_RELEASED, reason=pb.REASON_CODE_LINK_LOST_REVERTED, detail="reverted"
    )
    await scripted_agent.send(late)
    await scripted_agent.send(late)  # re-sent on a new session: kept once
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_COMPLETED))

    async def late_acks() -> list[Any] | None:
        body = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
        return body["late_acks"] if len(body["late_acks"]) >= 3 else None

    kept = await wait_for(late_acks)
    assert [(x["state"], x["reason"], x["detail"], x["gateway_id"]) for x in kept] == [
        # the cancel is recorded once the Release is sent: the agent's confirmation follows
        ("released", "CANCELLED_BY_OPERATOR", "", "gw-1"),
        ("released", "LINK_LOST_REVERTED", "reverted", "gw-1"),
        ("completed", None, "", "gw-1"),
    ]
    body = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
    assert body["state"] == "cancelled"  # a terminal state never changes
    assert (await transitions(headend, dispatch_id))[-1] == ("cancelled", "CANCELLED_BY_OPERATOR")


async def test_an_agent_that_reverted_while_the_headend_ended_the_dispatch_says_so(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    # The agent never confirms the end (its link is down): the headend ends the
    # dispatch complete at end_at (+ grace). What the agent reports when it is
    # back, that the fail-safe had returned the asset to its default, is kept.
    await scripted_agent.connect(demo_assets())
    dispatch_id, sp = await dispatch_up_to(headend.api, scripted_agent, duration_s=2)
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "complete"), timeout=30)
    assert (await transitions(headend, dispatch_id))[-1] == ("complete", None)

    await scripted_agent.send(
        agent_ack(sp, pb.ACK_STATE_RELEASED, reason=pb.REASON_CODE_LINK_LOST_REVERTED)
    )

    async def reported() -> Any:
        body = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
        found = [x for x in body["late_acks"] if x["reason"] == "LINK_LOST_REVERTED"]
        return body if found else None

    body = await wait_for(reported)
    assert body["state"] == "complete"
    shown = timeline(body)
    assert "the agent, after the end" in shown and "LINK_LOST_REVERTED" in shown
