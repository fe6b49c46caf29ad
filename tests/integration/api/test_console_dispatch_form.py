"""The console's dispatch form in a real browser: per asset by default,
limits checked as you type, the split preview as a table, and an in-page
confirmation naming what a submit will do (supersede, partial allocation,
offline agent), answered by its buttons or the keyboard."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agents_connected,
    apply_setpoints,
    demo_assets,
    dispatch_in_state,
    wait_for,
)
from gp_testing.browser import ARGS, WIDTHS, confirm, fits, signed_in_page

pytestmark = pytest.mark.e2e
SHARES_JS = "rows => rows.map(r => [r.dataset.asset, r.querySelector('.share').textContent])"


async def test_dispatch_form_checks_previews_and_confirms_what_it_will_do(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, chromium: str, shots: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    live = (
        await headend.api.post(
            "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 20, "duration_s": 600}
        )
    ).json()["id"]
    await apply_setpoints(
        scripted_agent, [await wait_for(lambda: scripted_agent.first("setpoint"))]
    )
    await wait_for(partial(dispatch_in_state, headend.api, live, "active"))
    operator = await headend.token("operator", name="console-op")
    base = str(headend.api.base_url).rstrip("/")
    api = headend.client(operator)

    async def get(path: str) -> Any:
        r = await api.get(path)
        assert r.status_code == 200, r.text
        return r.json()

    async def created(page: Any) -> dict[str, Any]:
        """The dispatch the form just sent, as the API has it."""
        link = page.locator("#msg a")
        await expect(link).to_be_visible()
        found: dict[str, Any] = await get(f"/api/v1/dispatches/{await link.text_content()}")
        return found

    async with api, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for width, height in WIDTHS:
                page = await signed_in_page(browser, base, operator, width, height)
                await expect(page.locator("#d-asset")).to_have_value("bess-1")  # per asset
                await expect(page.locator("#d-site")).to_have_value("")
                bess = await get("/api/v1/assets/bess-1")
                await page.fill("#d-p", str(bess["p_max_kw"] + 50))
                hint = page.locator("#d-hint")
                await expect(hint).to_contain_text(
                    f"outside bess-1's limits {bess['p_min_kw']:.1f} … {bess['p_max_kw']:.1f} kW"
                )
                await expect(page.locator("#submit")).to_be_disabled()
                await page.fill("#d-p", "30")
                await expect(hint).to_be_empty()

                # Supersede: declined, nothing is sent; accepted, it is.
                before = len(await get("/api/v1/dispatches?asset_id=bess-1"))
                await page.click("#submit")
                said = await confirm(page, False, width)
                await expect(page.locator("#msg")).to_have_text("Not sent.")
                assert "Dispatch 30.0 kW to asset bess-1?" in said, said
                assert f"supersedes live dispatch {live}" in said
                assert len(await get("/api/v1/dispatches?asset_id=bess-1")) == before
                await page.click("#submit")
                await expect(page.locator("#confirm")).to_be_visible()
                await page.screenshot(path=str(shots / f"confirm-{width}.png"))
                assert f"supersedes live dispatch {live}" in await confirm(page, True, width)
                sent = await created(page)
                assert (sent["kind"], sent["asset_id"], sent["p_kw"]) == ("asset", "bess-1", 30)
                live = sent["id"]

                # Both targets: a warning as you type, and the asset wins.
                await page.select_option("#d-site", "site-1")
                await expect(hint).to_contain_text("the asset wins")
                await page.fill("#d-p", "25")
                await page.click("#submit")
                said = await confirm(page, True, width)
                await expect(page.locator("#msg")).not_to_contain_text(live)
                sent = await created(page)
                assert sent["kind"] == "asset" and sent["asset_id"] == "bess-1"
                assert f"supersedes live dispatch {live}" in said
                await expect(page.locator("#msg")).to_contain_text(sent["warnings"][0])
                live = sent["id"]

                # A site beyond its capacity: the preview's table, then a partial confirm.
                site = next(s for s in await get("/api/v1/sites") if s["id"] == "site-1")
                await page.select_option("#d-asset", "")
                target = site["p_max_kw"] + 50
                await page.fill("#d-p", f"{target:g}")
                await expect(hint).to_contain_text("part will not be allocated")
                await page.click("#preview")
                want = (
                    await api.post(
                        "/api/v1/dispatches/preview",
                        json={
                            "site_id": "site-1",
                            "p_kw": target,
                            "duration_s": 300,
                            "accept_partial": True,
                        },
                    )
                ).json()
                rows = page.locator("#split tbody tr")
                await expect(rows).to_have_count(len(want["allocations"]))
                shares = await rows.evaluate_all(SHARES_JS)
                assert shares == [[a["asset_id"], f"{a['p_kw']:.1f}"] for a in want["allocations"]]
                await fits(page, width)
                await page.screenshot(path=str(shots / f"form-{width}.png"), full_page=True)
                await page.click("#submit")
                said = await confirm(page, True, width)
                await expect(page.locator("#msg")).not_to_contain_text(live)
                sent = await created(page)
                assert sent["kind"] == "site"
                unallocated = want["unallocated_kw"]
                assert re.search(f"cannot be allocated: {unallocated:.1f} of {target:.1f} kW", said)
                assert f"supersedes live dispatch {live}" in said
                await page.select_option("#d-asset", "bess-1")
                await page.screenshot(path=str(shots / f"form-sent-{width}.png"), full_page=True)
                await page.context.close()

            # The agent offline: the confirmation says so; Escape declines, nothing is sent.
            await scripted_agent.close()
            await wait_for(partial(agents_connected, api, False), what="agent offline")
            page = await signed_in_page(browser, base, operator, 1440, 900)
            await expect(page.locator("#offline-banner")).to_be_visible()
            await page.fill("#d-p", "10")
            await page.click("#submit")
            said = await confirm(page, None)
            await expect(page.locator("#msg")).to_have_text("Not sent.")
            assert "agent gw-1" in said and "offline" in said
        finally:
            await browser.close()
