"""Fixtures the API's tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    apply_setpoints,
    demo_assets,
    dispatch_in_state,
    wait_for,
)
from gp_testing.browser import chromium_path


async def submit_dispatch(api: httpx.AsyncClient, **body: Any) -> str:
    r = await api.post("/api/v1/dispatches", json={"duration_s": 600, **body})
    assert r.status_code == 201, r.text
    dispatch_id: str = r.json()["id"]
    return dispatch_id


@pytest.fixture
async def other_site(headend: RunningHeadend) -> AsyncIterator[str]:
    """A second site (gw-2) with one battery; yields its asset id."""
    from gridpilot.schema.pb import agent_pb2 as pb

    agent = headend.agent(gateway_id="gw-2", site_id="site-2")
    battery = pb.AssetInfo(
        asset_id="bess-2",
        name="Battery 2",
        asset_type=pb.ASSET_TYPE_BESS,
        p_min_kw=-50,
        p_max_kw=50,
    )
    await agent.connect([battery])
    try:
        yield "bess-2"
    finally:
        await agent.close()


@pytest.fixture
async def family(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, other_site: str
) -> dict[str, Any]:
    """Oldest to newest: a battery dispatch, a site dispatch whose three
    children the agent applied, a dispatch on another site's battery (so
    nothing supersedes the site's children and the family stays as it is)."""
    await scripted_agent.connect(demo_assets())
    api = headend.api
    first = await submit_dispatch(api, asset_id="bess-1", p_kw=10)
    site = await submit_dispatch(api, site_id="site-1", p_kw=90)

    def setpoints() -> list[Any] | None:
        own = [sp for sp in scripted_agent.of("setpoint") if sp.dispatch_id.startswith(site)]
        return own if len(own) == 3 else None

    await apply_setpoints(scripted_agent, await wait_for(setpoints, what="the site's setpoints"))
    await wait_for(partial(dispatch_in_state, api, site, "active"), what="the site active")
    children = sorted((await api.get(f"/api/v1/dispatches/{site}")).json()["children"])
    assert len(children) == 3
    last = await submit_dispatch(api, asset_id=other_site, p_kw=20)
    return {"first": first, "site": site, "children": children, "last": last}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a console test keeps its screenshots (every page at both widths), printed."""
    folder = tmp_path / "screenshots"
    print(f"console screenshots: {folder}")
    return folder


@pytest.fixture
def chromium() -> str:
    """Debian's chromium for Playwright (skips where it is not installed)."""
    return chromium_path()
