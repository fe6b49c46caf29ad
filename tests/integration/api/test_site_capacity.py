"""A site target beyond what the site can deliver is refused naming its capacity,
unless the request accepts a partial allocation (then it runs, with a warning)."""

from __future__ import annotations

import psycopg
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets

pytestmark = pytest.mark.integration

# demo_assets: bess-1 ±100 kW, pv-1 0..50 kW, ev-1 -22..0 kW → 150 kW export at most
BEYOND = {"site_id": "site-1", "p_kw": 5000, "duration_s": 60}


async def test_site_target_beyond_capacity_is_422_naming_the_capacity(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post("/api/v1/dispatches", json=BEYOND)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "out_of_limits"
    assert err["field"] == "p_kw"
    assert "at most 150 kW" in err["message"]
    assert "accept_partial" in err["message"]
    with psycopg.connect(headend.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM dispatches").fetchone() == (0,)

    preview = (await headend.api.post("/api/v1/dispatches/preview", json=BEYOND)).json()
    assert "at most 150 kW" in preview["refused"]
    assert preview["allocated_kw"] == 150


async def test_site_target_beyond_capacity_with_accept_partial_is_201_with_a_warning(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    body = {**BEYOND, "accept_partial": True}
    preview = (await headend.api.post("/api/v1/dispatches/preview", json=body)).json()
    assert preview["refused"] is None
    assert any("partial allocation accepted" in w for w in preview["warnings"])

    r = await headend.api.post("/api/v1/dispatches", json=body)
    assert r.status_code == 201, r.text
    warnings = r.json()["warnings"]
    assert any("at most 150 kW" in w and "4850 kW" in w for w in warnings), warnings
    shown = (await headend.api.get(f"/api/v1/dispatches/{r.json()['id']}")).json()
    assert shown["warnings"] == warnings


async def test_site_target_within_capacity_has_no_warning(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"site_id": "site-1", "p_kw": 150, "duration_s": 60}
    )
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] == []
    r = await headend.api.post("/api/v1/dispatches", json={**BEYOND, "accept_partial": "yes"})
    assert r.status_code == 422
    assert r.json()["field"] == "accept_partial"
