"""The console's dispatch list in a real browser: filters in the address,
pages that keep a site dispatch with its children, the back button."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from gp_testing import RunningHeadend
from gp_testing.browser import ARGS, WIDTHS, fits, signed_in_page

pytestmark = pytest.mark.e2e
ROWS_JS = "rows => rows.map(r => [r.dataset.dispatch, r.classList.contains('child')])"


async def test_dispatch_list_filters_and_pages_keep_families_whole(
    headend: RunningHeadend,
    family: dict[str, Any],
    other_site: str,
    chromium: str,
    shots: Path,
) -> None:
    """Five per page puts the site dispatch last on page one with its three
    children; Older shows the oldest; back returns; the asset filter lists
    the families with a dispatch on it; each view equals the API's, and its
    address, opened again, shows it again."""
    from playwright.async_api import async_playwright, expect

    for p_kw in (1, 2, 3):  # with the family's newest, four after the site dispatch
        r = await headend.api.post(
            "/api/v1/dispatches", json={"asset_id": other_site, "p_kw": p_kw, "duration_s": 600}
        )
        assert r.status_code == 201, r.text
    viewer = await headend.token("viewer", name="console-viewer")
    base = str(headend.api.base_url).rstrip("/")
    api = headend.client(viewer)

    async def apis(**params: Any) -> list[list[Any]]:
        r = await api.get("/api/v1/dispatches", params={"tree": "true", **params})
        assert r.status_code == 200, r.text
        return [[d["id"], d["parent_id"] is not None] for d in r.json()]

    async def shown(page: Any) -> list[list[Any]]:
        await expect(page.locator("#dispatches tbody tr[data-dispatch]").first).to_be_visible()
        rows: list[list[Any]] = await page.locator("#dispatches tbody tr").evaluate_all(ROWS_JS)
        return rows

    async with api, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for width, height in WIDTHS:
                page = await signed_in_page(browser, base, viewer, width, height)
                await page.click('header a:text-is("Dispatches")')
                await expect(page).to_have_url(f"{base}/console/dispatches")
                assert await shown(page) == await apis(limit=20)

                await page.select_option("#f-limit", "5")
                await page.click('#filters button[type="submit"]')
                await expect(page).to_have_url(f"{base}/console/dispatches?limit=5")
                first_page = await apis(limit=5)
                site_at = [r[0] for r in first_page].index(family["site"])
                assert first_page[site_at:] == [
                    [family["site"], False],
                    *[[c, True] for c in family["children"]],
                ]
                await expect(page.locator("#older")).to_be_visible()
                assert await shown(page) == first_page
                await fits(page, width)
                await page.screenshot(path=str(shots / f"list-{width}.png"), full_page=True)

                await page.click("#older")
                await expect(page).to_have_url(re.compile(r"limit=5&before="))
                await expect(page.locator("#older")).to_be_hidden()
                assert await shown(page) == [[family["first"], False]]
                await page.go_back()
                await expect(page).to_have_url(f"{base}/console/dispatches?limit=5")
                await expect(page.locator("#older")).to_be_visible()
                assert await shown(page) == first_page

                await page.select_option("#f-asset", "bess-1")
                await page.click('#filters button[type="submit"]')
                filtered = f"{base}/console/dispatches?asset_id=bess-1&limit=5"
                await expect(page).to_have_url(filtered)
                on_bess = await apis(asset_id="bess-1", limit=5)
                assert [r[0] for r in on_bess] == [
                    family["site"],
                    *family["children"],
                    family["first"],
                ]
                assert await shown(page) == on_bess
                await page.screenshot(path=str(shots / f"list-bess-{width}.png"), full_page=True)
                # The address is the view: opened again, the same rows and filters.
                await page.goto(filtered)
                assert await shown(page) == on_bess
                await expect(page.locator("#f-asset")).to_have_value("bess-1")
                await expect(page.locator("#f-limit")).to_have_value("5")
                await page.context.close()
        finally:
            await browser.close()
