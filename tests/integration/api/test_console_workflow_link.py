"""The dispatch page links to the dispatch's workflow in the Temporal UI."""

from __future__ import annotations

from pathlib import Path

import pytest
from gp_testing import TestPki, demo_assets, running_headend, wait_for
from gp_testing.browser import ARGS, WIDTHS, fits, signed_in_page
from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.e2e
UI = "http://127.0.0.1:8233"  # the link only: the test's Temporal runs headless


async def test_dispatch_page_links_its_workflow_in_the_temporal_ui(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    test_pki: TestPki,
    shots: Path,
    chromium: str,
) -> None:
    from playwright.async_api import async_playwright, expect

    address = temporal_env.client.service_client.config.target_host
    namespace = temporal_env.client.namespace
    async with running_headend(
        database_url, address, task_queue, test_pki, temporal_ui_url=UI + "/"
    ) as headend:
        agent = headend.agent()
        await agent.connect(demo_assets())
        try:
            body = {"asset_id": "bess-1", "p_kw": 20, "duration_s": 600}
            dispatch = (await headend.api.post("/api/v1/dispatches", json=body)).json()["id"]
            await wait_for(lambda: agent.first("setpoint"))
            # The link's id names a real workflow on the headend's Temporal.
            described = await temporal_env.client.get_workflow_handle(dispatch).describe()
            assert described.id == dispatch
            viewer = await headend.token("viewer", name="console-viewer")
            base = str(headend.api.base_url).rstrip("/")
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
                try:
                    for width, height in WIDTHS:
                        page = await signed_in_page(browser, base, viewer, width, height)
                        await page.click(f'#dispatches tr[data-dispatch="{dispatch}"] td.id a')
                        link = page.locator("#workflow-link")
                        want = f"{UI}/namespaces/{namespace}/workflows/{dispatch}"
                        await expect(link).to_have_attribute("href", want)
                        await fits(page, width)
                        await page.screenshot(path=str(shots / f"dispatch-{width}.png"))
                        await page.context.close()
                finally:
                    await browser.close()
        finally:
            await agent.close()
