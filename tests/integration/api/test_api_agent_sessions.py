"""GET /agents/{gateway_id}/sessions: a gateway's connects and disconnects;
GET /agents/sessions: every gateway's, in one call."""

from __future__ import annotations

from functools import partial
from typing import Any

from gp_testing import RunningHeadend, agents_connected, demo_assets, wait_for


async def test_sessions_list_newest_first_with_the_end_reason_of_each_ended_one(
    headend: RunningHeadend,
) -> None:
    first = headend.agent()
    await first.connect(demo_assets())
    await first.close()
    await wait_for(partial(agents_connected, headend.api, False), what="first session ended")
    second = headend.agent()
    try:
        await second.connect(demo_assets())
        await wait_for(partial(agents_connected, headend.api, True), what="second session live")
        r = await headend.api.get("/api/v1/agents/gw-1/sessions")
        assert r.status_code == 200, r.text
        sessions: list[dict[str, Any]] = r.json()
        agent = (await headend.api.get("/api/v1/agents")).json()[0]
        assert len(sessions) == 2
        live, ended = sessions
        assert live["id"] == agent["session_id"] and live["ended_at"] is None
        assert live["end_reason"] is None and live["agent_version"] == "test"
        assert ended["ended_at"] is not None and ended["end_reason"] == agent["last_end_reason"]
        assert ended["connected_at"] <= live["connected_at"]
        one = await headend.api.get("/api/v1/agents/gw-1/sessions", params={"limit": 1})
        assert [s["id"] for s in one.json()] == [live["id"]]
        every = await headend.api.get("/api/v1/agents/sessions")
        assert every.status_code == 200, every.text
        assert every.json() == sessions
        newest = await headend.api.get("/api/v1/agents/sessions", params={"per_gateway": 1})
        assert [s["id"] for s in newest.json()] == [live["id"]]
    finally:
        await second.close()


async def test_sessions_of_an_unknown_gateway_are_404(headend: RunningHeadend) -> None:
    r = await headend.api.get("/api/v1/agents/gw-none/sessions")
    assert r.status_code == 404
    assert r.json()["field"] == "gateway_id"
