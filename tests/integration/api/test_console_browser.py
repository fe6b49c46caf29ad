"""The operator console in a real browser (Debian chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, now_pb, wait_for

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background calls home.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    return CHROMIUM


async def test_operator_signs_in_sees_the_site_and_dispatches_it(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, chromium: str, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=12.5, soc_pct=61.0)
    await scripted_agent.send(
        pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[sample]))
    )
    await wait_for(lambda: scripted_agent.first("telemetry_ack"))
    token = await headend.token("operator", name="console-op")
    base = str(headend.api.base_url).rstrip("/")

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/")
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#token", "gp_wrong")
            await page.click("#login-form button[type=submit]")
            await expect(page.locator("#login-msg")).not_to_be_empty()

            await page.fill("#token", token)
            await page.click("#login-form button[type=submit]")
            await expect(page.locator("#who")).to_contain_text("console-op")
            agents = page.locator("#agents tbody tr")
            await expect(agents).to_have_count(1)
            await expect(agents.first).to_contain_text("gw-1")
            await expect(agents.first).to_contain_text("yes")
            bess = page.locator('#assets tbody tr[data-asset="bess-1"]')
            await expect(bess).to_contain_text("12.5")
            await expect(bess).to_contain_text("61.0")

            # A bad setpoint is refused with the API's message, nothing dispatched.
            await page.select_option("#target", "asset:bess-1")
            await page.fill("input[name=p_kw]", "9999")
            await page.click("#submit")
            await expect(page.locator("#msg")).to_contain_text("outside")
            assert scripted_agent.of("setpoint") == []

            await page.select_option("#target", "site:site-1")
            await page.fill("input[name=p_kw]", "90")
            await page.click("#preview")
            await expect(page.locator("#msg")).to_contain_text("capacity_weighted_clamped/v1")
            await page.click("#submit")
            await expect(page.locator("#msg")).to_contain_text("Dispatch")
            await wait_for(lambda: len(scripted_agent.of("setpoint")) == 3)
            children = [sp.dispatch_id for sp in scripted_agent.of("setpoint")]
            site_dispatch = children[0].rsplit(".", 1)[0]
            # The site dispatch and each child have their row (the children,
            # recorded after it, are the newest).
            row = page.locator(f'#dispatches tbody tr[data-dispatch="{site_dispatch}"]')
            await expect(row).to_contain_text("site-1", timeout=15_000)
            for child in children:
                child_row = page.locator(f'#dispatches tbody tr[data-dispatch="{child}"]')
                await expect(child_row).to_have_count(1, timeout=15_000)
            await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        finally:
            await browser.close()


async def test_api_docs_work_offline_and_authorize_with_a_token(
    headend: RunningHeadend, chromium: str
) -> None:
    """/docs and the console load with every request outside the headend
    refused (an OT network), break no rule of their CSP, and the docs'
    Authorize button takes a bearer token that "Try it out" then sends."""
    from playwright.async_api import Route, async_playwright, expect

    token = await headend.token("viewer", name="docs-reader")
    base = str(headend.api.base_url).rstrip("/")
    outside: list[str] = []
    problems: list[str] = []

    async def only_local(route: Route) -> None:
        if route.request.url.startswith(base + "/"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = await browser.new_page()
            await page.route("**/*", only_local)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            await page.goto(f"{base}/")
            await expect(page.locator("#login")).to_be_visible()

            await page.goto(f"{base}/docs")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text("GridPilot")
            await page.click(".swagger-ui .auth-wrapper .authorize")
            await page.fill(".modal-ux input", token)
            await page.click(".modal-ux .auth-btn-wrapper .authorize")
            await page.click(".modal-ux .btn-done")
            me = page.locator('.opblock:has(.opblock-summary-path[data-path="/api/v1/me"])')
            await me.locator(".opblock-summary").click()
            await me.locator(".try-out__btn").click()
            await me.locator(".execute").click()
            await expect(
                me.locator(".live-responses-table tbody .response-col_status")
            ).to_contain_text("200")
            await expect(me.locator(".live-responses-table")).to_contain_text("token:docs-reader")
        finally:
            await browser.close()
    assert outside == []
    assert problems == []
