"""The console's audit page in a real browser: auditor only, filters in the
address, the rows and the CSV export equal the API's."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, wait_for
from gp_testing.browser import ARGS, WIDTHS, fits, signed_in_page

pytestmark = pytest.mark.e2e
IDS_JS = "rows => rows.map(r => Number(r.dataset.id))"


async def test_auditor_filters_and_exports_the_audit_log(
    headend: RunningHeadend,
    scripted_agent: ScriptedAgent,
    chromium: str,
    shots: Path,
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    operator = await headend.token("operator", name="console-op")
    async with headend.client(operator) as op:
        for p_kw in (10, 20):
            body = {"asset_id": "bess-1", "p_kw": p_kw, "duration_s": 600}
            assert (await op.post("/api/v1/dispatches", json=body)).status_code == 201
    auditor = await headend.token("auditor", name="console-auditor")
    viewer = await headend.token("viewer", name="console-viewer")
    base = str(headend.api.base_url).rstrip("/")
    api = headend.client(auditor)
    filters = {"actor": "token:console-op", "action": "dispatch.submit"}

    async def ids(**params: Any) -> list[int]:
        r = await api.get("/api/v1/audit", params={"limit": 50, **params})
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()]

    async def shown_is_the_apis(page: Any, **params: Any) -> bool:
        shown = await page.locator("#audit tbody tr[data-id]").evaluate_all(IDS_JS)
        return bool(shown) and shown == await ids(**params)

    async with api, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for width, height in WIDTHS:
                page = await signed_in_page(browser, base, viewer, width, height)
                await expect(page.locator('header a:text-is("Audit")')).to_be_hidden()
                await page.context.close()

                page = await signed_in_page(browser, base, auditor, width, height)
                await page.click('header a:text-is("Audit")')
                await expect(page).to_have_url(f"{base}/console/audit")
                await wait_for(partial(shown_is_the_apis, page), what="the whole log")
                await page.fill("#f-actor", filters["actor"])
                await page.fill("#f-action", filters["action"])
                await page.click('#filters button[type="submit"]')
                await expect(page).to_have_url(
                    f"{base}/console/audit?{urlencode(filters)}&limit=50"
                )
                await wait_for(partial(shown_is_the_apis, page, **filters), what="filtered")
                rows = page.locator("#audit tbody tr[data-id]")
                assert await rows.count() >= 2
                for actor in await rows.locator(".actor").all_text_contents():
                    assert actor == filters["actor"]
                await fits(page, width)
                await page.screenshot(path=str(shots / f"audit-{width}.png"), full_page=True)

                async with page.expect_download() as download:
                    await page.click("#export")
                saved = tmp_path / f"audit-{width}.csv"
                await (await download.value).save_as(saved)
                csv = await api.get(
                    "/api/v1/audit", params={**filters, "format": "csv", "limit": 10_000}
                )
                assert saved.read_bytes() == csv.content and filters["action"] in csv.text

                await page.go_back()
                await expect(page).to_have_url(f"{base}/console/audit")
                await wait_for(partial(shown_is_the_apis, page), what="back to the whole log")
                await page.context.close()
        finally:
            await browser.close()
