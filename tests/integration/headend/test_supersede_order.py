"""The supersede order through the REST API (real Temporal, PostgreSQL, gRPC).

Quick successive dispatches to one asset, back to back (each sent when the last
answered 201) or all at once: whatever the timing, exactly one of them runs, the
newest submitted of the highest priority; every other ends cancelled / SUPERSEDED,
its ``superseded_by`` chain leading to the survivor through ever newer ones (no
cycle), or, if newer and of lower priority, is refused. Site children compete
with their parent's submission order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, agent_ack, demo_assets, wait_for

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration

ASSET = "bess-1"
TERMINAL = ("complete", "expired", "failed", "cancelled")


@contextlib.asynccontextmanager
async def handing_over(agent: ScriptedAgent) -> AsyncIterator[list[str]]:
    """Play the real agent (edge_agent/control.py): each new setpoint for an asset
    is accepted and applied at once, and the one it replaces is released as
    SUPERSEDED. Yields the order in which setpoints reached the agent."""
    seen: list[str] = []
    held: dict[str, Any] = {}

    async def run() -> None:
        while True:
            for sp in agent.of("setpoint")[len(seen) :]:
                seen.append(sp.dispatch_id)
                await agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
                old = held.get(sp.asset_id)
                if old is not None:
                    await agent.send(
                        agent_ack(
                            old,
                            pb.ACK_STATE_RELEASED,
                            reason=pb.REASON_CODE_SUPERSEDED,
                            detail=f"superseded by {sp.dispatch_id}",
                        )
                    )
                held[sp.asset_id] = sp
                await agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=sp.p_kw))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _submit(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any] | None:
    """The created dispatch, or None if refused 409 (a live one of higher priority)."""
    r = await api.post("/api/v1/dispatches", json={"duration_s": 600, **body})
    if r.status_code == 409:
        assert r.json()["field"] == "priority"
        return None
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _submit_all(
    api: httpx.AsyncClient, bodies: list[dict[str, Any]], concurrent: bool
) -> list[dict[str, Any] | None]:
    if concurrent:
        return list(await asyncio.gather(*(_submit(api, b) for b in bodies)))
    return [await _submit(api, b) for b in bodies]  # each after the last answered


async def _competitors(api: httpx.AsyncClient, created: list[dict[str, Any]]) -> list[str]:
    """The dispatches that claim the asset: asset ones, and each site's child on it."""
    ids = []
    for d in created:
        if d["kind"] == "asset":
            ids.append(d["id"])
            continue

        async def child(site_id: str = d["id"]) -> str | None:
            view = (await api.get(f"/api/v1/dispatches/{site_id}")).json()
            return next((c for c in view["children"] if c.endswith(f".{ASSET}")), None)

        ids.append(await wait_for(child))
    return ids


async def _settled(api: httpx.AsyncClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Once every one but one has ended and that one is active."""
    got: dict[str, dict[str, Any]] = {}

    async def views() -> bool:
        got.update({i: (await api.get(f"/api/v1/dispatches/{i}")).json() for i in ids})
        live = [v for v in got.values() if v["state"] not in TERMINAL]
        return len(live) == 1 and live[0]["state"] == "active"

    try:
        await wait_for(views, timeout=60)
    except AssertionError:
        states = {i: (v["state"], v["reason"], v["superseded_by"]) for i, v in got.items()}
        pytest.fail(f"not exactly one running: {states}")
    return got


def _check_one_survivor(views: dict[str, dict[str, Any]], setpoints: list[str]) -> str:
    """Exactly one runs, the right one; the others were superseded toward it."""
    (survivor,) = [i for i, v in views.items() if v["state"] not in TERMINAL]
    assert views[survivor]["superseded_by"] is None
    # Nothing was sent after the survivor: a dispatch superseded at a claim is never
    # delivered afterwards.
    mine = [s for s in setpoints if s in views]
    assert mine[-1] == survivor, mine
    links = []
    for i, v in views.items():
        if i == survivor:
            continue
        if v["state"] == "failed":
            # refused: newer than, and below the priority of, an older live one
            assert v["reason"] == "PRIORITY_CONFLICT", v
            assert v["priority"] < views[survivor]["priority"], v
            continue
        assert (v["state"], v["reason"]) == ("cancelled", "SUPERSEDED"), v
        # Each chain of superseded_by ends at the survivor: no two name each other.
        seen, at = {i}, i
        while at != survivor:
            nxt = views[at]["superseded_by"]
            assert nxt in views and nxt not in seen, (at, nxt, views)
            links.append((at, nxt))
            seen.add(nxt)
            at = nxt
    # The order: the survivor is the newest of the highest priority, and each link
    # leads to a newer (or higher priority) one.
    rank = {i: (v["priority"], v["submit_seq"]) for i, v in views.items()}
    assert len(set(rank.values())) == len(rank), rank  # a total order
    assert rank[survivor] == max(rank.values()), (survivor, rank)
    assert all(rank[nxt] > rank[at] for at, nxt in links), (links, rank)
    return survivor


@pytest.mark.parametrize("concurrent", [False, True], ids=["back_to_back", "concurrent"])
async def test_quick_successive_dispatches_to_one_asset_leave_exactly_the_newest_running(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, concurrent: bool
) -> None:
    await scripted_agent.connect(demo_assets())
    api = headend.api
    async with handing_over(scripted_agent) as setpoints:
        bodies = [{"asset_id": ASSET, "p_kw": p} for p in (10, 20, 30, 40, 50)]
        created = [d for d in await _submit_all(api, bodies, concurrent) if d is not None]
        assert len(created) == 5
        ids = [d["id"] for d in created]
        views = await _settled(api, ids)
        survivor = _check_one_survivor(views, setpoints)
    newest = max(created, key=lambda d: d["submit_seq"])
    assert survivor == newest["id"]
    if not concurrent:
        assert survivor == ids[-1]  # the last one sent is the newest
        assert [views[i]["submit_seq"] for i in ids] == sorted(d["submit_seq"] for d in created)


@pytest.mark.parametrize("concurrent", [False, True], ids=["back_to_back", "concurrent"])
async def test_mixed_priorities_leave_the_newest_of_the_highest_priority_running(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, concurrent: bool
) -> None:
    await scripted_agent.connect(demo_assets())
    api = headend.api
    async with handing_over(scripted_agent) as setpoints:
        plan = [(10, 0), (20, 5), (30, 0), (40, 5), (50, 0)]
        bodies = [{"asset_id": ASSET, "p_kw": p, "priority": prio} for p, prio in plan]
        answers = await _submit_all(api, bodies, concurrent)
        created = [d for d in answers if d is not None]
        views = await _settled(api, [d["id"] for d in created])
        survivor = _check_one_survivor(views, setpoints)
    # the newest of priority 5 keeps the asset
    high = [d for d in created if d["priority"] == 5]
    assert survivor == max(high, key=lambda d: d["submit_seq"])["id"]
    if not concurrent:
        assert views[survivor]["p_kw"] == 40.0
        # back to back, a newer one below the live one's priority is refused at once
        assert [d is None for d in answers] == [False, False, True, False, True]


@pytest.mark.parametrize("concurrent", [False, True], ids=["back_to_back", "concurrent"])
@pytest.mark.parametrize("site_last", [True, False], ids=["site_newest", "asset_newest"])
async def test_site_children_compete_in_their_parents_submission_order(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, concurrent: bool, site_last: bool
) -> None:
    await scripted_agent.connect(demo_assets())
    api = headend.api
    async with handing_over(scripted_agent) as setpoints:
        site = {"site_id": scripted_agent.site_id, "p_kw": 60}
        asset = [{"asset_id": ASSET, "p_kw": p} for p in (10, 20)]
        bodies = [*asset, site] if site_last else [asset[0], site, asset[1]]
        created = [d for d in await _submit_all(api, bodies, concurrent) if d is not None]
        assert len(created) == 3
        ids = await _competitors(api, created)
        views = await _settled(api, ids)
        survivor = _check_one_survivor(views, setpoints)
    site_view = next(d for d in created if d["kind"] == "site")
    child = next(i for i in ids if views[i]["parent_id"] == site_view["id"])
    assert views[child]["submit_seq"] == site_view["submit_seq"]  # inherited
    newest = max(created, key=lambda d: d["submit_seq"])
    assert survivor == (child if newest["kind"] == "site" else newest["id"])
    if not concurrent:
        assert survivor == (child if site_last else ids[-1])
