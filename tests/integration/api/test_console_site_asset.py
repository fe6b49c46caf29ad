"""The console's site and asset pages in a real browser, read against the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agent_ack,
    demo_assets,
    dispatch_in_state,
    wait_for,
)
from gp_testing.browser import ARGS, WIDTHS, fits, signed_in_page

from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.times import ts_to_pb

pytestmark = pytest.mark.e2e

POINTS_JS = "els => els.map(e => [e.dataset.t, Number(e.dataset.v)])"


def _sample(asset_id: str, minutes_ago: float, **values: Any) -> Any:
    ts = ts_to_pb(datetime.now(UTC) - timedelta(minutes=minutes_ago))
    details = values.pop("details", None)
    sample = pb.TelemetrySample(asset_id=asset_id, ts=ts, **values)
    if details:
        sample.details.update(details)
    return sample


async def _history(agent: ScriptedAgent) -> None:
    """An hour of battery history (every 5 min), and one sample of the PV
    (its power point stale) and of the EV charger (a session)."""
    samples = [
        _sample("bess-1", m, p_kw=float(m % 40) - 20, soc_pct=40.0 + m / 3)
        for m in range(55, 0, -5)
    ]
    samples.append(_sample("bess-1", 0.1, p_kw=20.0, soc_pct=61.0, details={"soh_pct": 97.0}))
    samples.append(
        _sample(
            "pv-1",
            0.1,
            p_kw=31.5,
            details={"irradiance_w_m2": 640.0, "quality": {"p_kw": "stale"}},
        )
    )
    samples.append(_sample("ev-1", 0.1, p_kw=-7.0, details={"session_state": "charging"}))
    await agent.send(pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=samples)))
    await wait_for(lambda: agent.first("telemetry_ack"))


async def test_site_and_asset_pages_show_the_apis_values_and_history(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, chromium: str, shots: Path
) -> None:
    """From the overview an operator follows the site's link: its assets with
    the API's latest values and quality, its gateway, the stacked power bar
    and its dispatch; then an asset's link: nameplate, limits, binding,
    type-specific fields and a history chart whose points are the telemetry
    API's buckets with the active dispatch drawn as a setpoint; the 24 h
    window is a link and the back button returns to 1 h."""
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    await _history(scripted_agent)
    body = {"asset_id": "bess-1", "p_kw": 20, "duration_s": 3600}
    dispatch = (await headend.api.post("/api/v1/dispatches", json=body)).json()["id"]
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=20))
    await wait_for(partial(dispatch_in_state, headend.api, dispatch, "active"))

    viewer = await headend.token("viewer", name="console-viewer")
    base = str(headend.api.base_url).rstrip("/")
    api = headend.client(viewer)

    async def get(path: str, **params: Any) -> Any:
        r = await api.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def chart_is_the_apis(page: Any, hours: int, bucket: str) -> bool:
        """The chart's points are the API's buckets over the same window
        (read with the page's own start and end, from its address)."""
        shown = await page.locator("#chart circle.p-pt").evaluate_all(POINTS_JS)
        if not shown:
            return False
        end = datetime.now(UTC)
        rows = await get(
            "/api/v1/telemetry",
            asset_id="bess-1",
            bucket=bucket,
            start=(end - timedelta(hours=hours)).isoformat(),
            end=end.isoformat(),
        )
        want = [(r["bucket"], round(r["p_kw_avg"], 6)) for r in rows if r["p_kw_avg"] is not None]
        got = [(datetime.fromisoformat(t).isoformat(), round(v, 6)) for t, v in shown]
        want = [(datetime.fromisoformat(t).isoformat(), v) for t, v in want]
        return got == want

    async with api, async_playwright() as p:
        assets = {a["id"]: a for a in await get("/api/v1/assets", site_id="site-1")}
        latest = {i: await get(f"/api/v1/assets/{i}/telemetry/latest") for i in assets}
        site = next(s for s in await get("/api/v1/sites") if s["id"] == "site-1")
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for width, height in WIDTHS:
                page = await signed_in_page(browser, base, viewer, width, height)
                await page.click('#sites tbody tr[data-site="site-1"] a')
                await expect(page).to_have_url(f"{base}/console/sites/site-1")
                await expect(page.locator("#site-name")).to_have_text(site["name"])
                for asset_id, sample in latest.items():
                    row = page.locator(f'#assets tbody tr[data-asset="{asset_id}"]')
                    await expect(row.locator(".p")).to_have_text(f"{sample['p_kw']:.1f}")
                    quality = sample["details"].get("quality", {})
                    words = ", ".join(f"{k} {v}" for k, v in quality.items()) or "good"
                    await expect(row.locator(".quality")).to_have_text(words)
                net = sum(s["p_kw"] for s in latest.values())
                await expect(page.locator("#net")).to_contain_text(f"{net:.1f} kW")
                segments = page.locator("#stacked rect.seg")
                await expect(segments).to_have_count(3)
                drawn = await segments.evaluate_all(
                    "els => els.map(e => [e.dataset.asset, Number(e.dataset.p)])"
                )
                want = sorted((i, s["p_kw"]) for i, s in latest.items())
                assert sorted(map(tuple, drawn)) == want
                gateway = page.locator('#gateways tbody tr[data-gateway="gw-1"]')
                await expect(gateway).to_contain_text("yes")
                await expect(
                    page.locator(f'#dispatches tr[data-dispatch="{dispatch}"]')
                ).to_contain_text("active")
                await expect(page.locator("[data-cancel]")).to_have_count(0)  # a viewer
                await fits(page, width)
                await page.screenshot(path=str(shots / f"site-{width}.png"), full_page=True)

                await page.click('#assets tbody tr[data-asset="bess-1"] a')
                await expect(page).to_have_url(f"{base}/console/assets/bess-1")
                bess = assets["bess-1"]
                limits = f"{bess['p_min_kw']:.1f} … {bess['p_max_kw']:.1f}"
                await expect(page.locator("#limits")).to_have_text(limits)
                await expect(page.locator("#nameplate")).to_contain_text(bess["gateway_id"])
                p_now = page.locator('#latest tr[data-field="p_kw"] .v')
                await expect(p_now).to_have_text(f"{latest['bess-1']['p_kw']:.2f}")
                soc = page.locator('#latest tr[data-field="soc_pct"] .v')
                await expect(soc).to_have_text(f"{latest['bess-1']['soc_pct']:.2f}")
                soh = latest["bess-1"]["details"]["soh_pct"]
                await expect(page.locator('#details [data-detail="soh_pct"]')).to_have_text(
                    f"{soh:.2f}"
                )
                await wait_for(partial(chart_is_the_apis, page, 1, "1m"), what="1 h chart")
                step = page.locator(f'#chart path.setpoint[data-dispatch="{dispatch}"]')
                await expect(step).to_have_attribute("data-p", "20")
                assert await page.locator("#chart circle.soc-pt").count() > 0
                await fits(page, width)
                await page.screenshot(path=str(shots / f"asset-1h-{width}.png"), full_page=True)

                await page.click('#windows a:text-is("24h")')
                await expect(page).to_have_url(f"{base}/console/assets/bess-1?window=24h")
                await wait_for(partial(chart_is_the_apis, page, 24, "15m"), what="24 h chart")
                await page.screenshot(path=str(shots / f"asset-24h-{width}.png"), full_page=True)
                await page.go_back()
                await expect(page).to_have_url(f"{base}/console/assets/bess-1")
                await wait_for(partial(chart_is_the_apis, page, 1, "1m"), what="1 h chart again")

                # The PV and the EV charger show what their type is known by.
                await page.go_back()
                await expect(page).to_have_url(f"{base}/console/sites/site-1")
                await page.click('#assets tbody tr[data-asset="pv-1"] a')
                await expect(page.locator('#details [data-detail="irradiance_w_m2"]')).to_have_text(
                    "640.00"
                )
                await expect(page.locator('#latest tr[data-field="p_kw"] td.bad')).to_have_text(
                    "stale"
                )
                await page.screenshot(path=str(shots / f"asset-pv-{width}.png"), full_page=True)
                await page.go_back()
                await page.click('#assets tbody tr[data-asset="ev-1"] a')
                await expect(page.locator('#details [data-detail="session_state"]')).to_have_text(
                    "charging"
                )
                await fits(page, width)
                await page.context.close()
        finally:
            await browser.close()
