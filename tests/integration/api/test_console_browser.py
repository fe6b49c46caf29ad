"""The operator console in a real browser (Debian chromium driven by Playwright)."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agent_ack,
    agents_connected,
    apply_setpoints,
    demo_assets,
    dispatch_in_state,
    now_pb,
    wait_for,
)
from gp_testing.browser import ARGS, WIDTHS, confirm, fits, sign_in

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.e2e


async def test_operator_signs_in_sees_the_site_and_dispatches_it(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, chromium: str, shots: Path
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
            await expect(page.locator("#d-asset")).to_have_value("bess-1")
            await page.fill("#d-p", "9999")
            await expect(page.locator("#d-hint")).to_contain_text("outside")
            await expect(page.locator("#submit")).to_be_disabled()
            assert scripted_agent.of("setpoint") == []

            await page.select_option("#d-asset", "")
            await page.select_option("#d-site", "site-1")
            await page.fill("#d-p", "90")
            await page.click("#preview")
            await expect(page.locator("#split")).to_contain_text("capacity_weighted_clamped/v1")
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
            await page.screenshot(path=str(shots / "operator-1440.png"), full_page=True)
        finally:
            await browser.close()


TIMELINE_JS = """rows => rows.map(r => [r.querySelector('.to').textContent,
    r.querySelector('.actor').textContent, r.querySelector('.reason').textContent])"""


async def test_dispatch_detail_from_the_list_at_desktop_and_phone_widths(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, chromium: str, shots: Path
) -> None:
    """An operator opens a site dispatch from the list by its link, reads the
    timeline the API has, follows a child from the allocation and comes back
    with the browser's back button; a viewer sees no mutating control."""
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    operator = await headend.token("operator", name="console-op")
    viewer = await headend.token("viewer", name="console-viewer")
    base = str(headend.api.base_url).rstrip("/")
    api = headend.client(operator)
    async with api:
        body = {"site_id": "site-1", "p_kw": 90, "duration_s": 600}
        created = await api.post("/api/v1/dispatches", json=body)
        assert created.status_code == 201, created.text
        site_dispatch = created.json()["id"]
        await wait_for(lambda: len(scripted_agent.of("setpoint")) == 3)
        await apply_setpoints(scripted_agent, scripted_agent.of("setpoint"))

        async def detail(dispatch_id: str) -> dict[str, Any]:
            r = await api.get(f"/api/v1/dispatches/{dispatch_id}")
            assert r.status_code == 200, r.text
            found: dict[str, Any] = r.json()
            return found

        async def timeline_is_the_apis(page: Any, dispatch_id: str) -> bool:
            shown = await page.locator("#timeline tbody tr").evaluate_all(TIMELINE_JS)
            transitions = (await detail(dispatch_id))["transitions"]
            want = [[t["to_state"], t["actor"], t["reason"] or ""] for t in transitions]
            return bool(want) and shown == want

        async def site_active() -> bool:
            return (await detail(site_dispatch))["state"] == "active"

        await wait_for(site_active, what="the site dispatch goes active")
        children = sorted((await detail(site_dispatch))["children"])
        assert len(children) == 3

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
            try:
                for width, height in WIDTHS:
                    context = await browser.new_context(viewport={"width": width, "height": height})
                    page = await context.new_page()
                    await sign_in(page, base, operator, width)
                    await expect(page.locator("#dispatch-form")).to_be_visible()
                    row = page.locator(f'#dispatches tbody tr[data-dispatch="{site_dispatch}"]')
                    await expect(row.locator("td.id a")).to_have_text(site_dispatch)  # full id
                    await expect(row.locator("button.copy")).to_be_visible()
                    await expect(row.locator("[data-cancel]")).to_have_count(1)
                    # The children come right after their parent, in id order.
                    listed = await page.locator("#dispatches tbody tr").evaluate_all(
                        "rows => rows.map(r => r.dataset.dispatch)"
                    )
                    at = listed.index(site_dispatch)
                    assert listed[at + 1 : at + 4] == children, listed
                    await fits(page, width)
                    await page.screenshot(path=str(shots / f"list-{width}.png"), full_page=True)

                    await row.locator("td.id a").click()
                    await expect(page).to_have_url(f"{base}/console/dispatches/{site_dispatch}")
                    await expect(page.locator("#dispatch-id")).to_have_text(site_dispatch)

                    await wait_for(partial(timeline_is_the_apis, page, site_dispatch))
                    allocation = page.locator("#allocation tbody tr")
                    await expect(allocation).to_have_count(3)
                    for child in children:
                        share = (await detail(child))["p_kw"]
                        line = page.locator(f'#allocation tr[data-child="{child}"]')
                        await expect(line).to_contain_text(f"{share:.1f}")
                    await expect(page.locator("#cancel")).to_be_visible()
                    await fits(page, width)
                    await page.screenshot(path=str(shots / f"site-{width}.png"), full_page=True)

                    await page.locator(f'#allocation tr[data-child="{children[0]}"] a').click()
                    await expect(page).to_have_url(f"{base}/console/dispatches/{children[0]}")
                    await expect(page.locator("#summary")).to_contain_text(site_dispatch)
                    await wait_for(partial(timeline_is_the_apis, page, children[0]))
                    await fits(page, width)
                    await page.screenshot(path=str(shots / f"child-{width}.png"), full_page=True)

                    await page.go_back()
                    await expect(page).to_have_url(f"{base}/console/dispatches/{site_dispatch}")
                    await expect(page.locator("#dispatch-id")).to_have_text(site_dispatch)
                    await page.go_back()
                    await expect(page).to_have_url(f"{base}/")
                    await expect(row).to_be_visible()
                    await context.close()

                    # A viewer reads the same pages without a mutating control.
                    context = await browser.new_context(viewport={"width": width, "height": height})
                    page = await context.new_page()
                    await sign_in(page, base, viewer, width)
                    await expect(page.locator("#who")).to_contain_text("viewer")
                    row = page.locator(f'#dispatches tbody tr[data-dispatch="{site_dispatch}"]')
                    await expect(row.locator("td.id a")).to_have_text(site_dispatch)
                    await expect(page.locator("#dispatch-form")).to_be_hidden()
                    await expect(page.locator("[data-cancel]")).to_have_count(0)
                    await page.screenshot(path=str(shots / f"viewer-list-{width}.png"))
                    await row.locator("td.id a").click()
                    await wait_for(partial(timeline_is_the_apis, page, site_dispatch))
                    await expect(page.locator("#cancel")).to_be_hidden()
                    await context.close()

                # Cancel asks first (at phone width): kept, nothing happens;
                # confirmed, it cancels.
                context = await browser.new_context(viewport={"width": 390, "height": 844})
                page = await context.new_page()
                await sign_in(page, base, operator, 390)
                await page.goto(f"{base}/console/dispatches/{site_dispatch}")
                await expect(page.locator("#cancel")).to_be_visible()
                await page.click("#cancel")
                said = await confirm(page, False, 390)
                assert f"Cancel dispatch {site_dispatch}?" in said
                await expect(page.locator("#cancel")).to_be_visible()
                assert (await detail(site_dispatch))["state"] == "active"
                await page.click("#cancel")
                await expect(page.locator("#confirm")).to_be_visible()
                await page.screenshot(path=str(shots / "cancel-confirm-390.png"))
                await confirm(page, True, 390)

                async def cancelled_by_operator() -> bool:
                    transitions = (await detail(site_dispatch))["transitions"]
                    return any(t["actor"] == "token:console-op" for t in transitions[1:])

                await wait_for(cancelled_by_operator, what="the cancel reaches the dispatch")
                await page.goto(f"{base}/console/dispatches/dsp-none")
                await expect(page.locator("#load-msg")).to_contain_text("does not exist")
                await context.close()
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


async def test_overview_and_agents_pages_show_the_site_and_an_agent_going_offline(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, chromium: str, shots: Path
) -> None:
    """At 1440 and 390 px the overview shows the site with the API's asset
    count, its active dispatch and its agent connected, no offline banner,
    a failed dispatch's alarm links to its page, and the agent's buffer
    dropping at the edge (its heartbeat says so) is an alarm; the Agents link
    opens the agent's connection, edge buffer and session history. Once the agent stops, the
    overview shows the offline banner and alarm, and the banner's link opens
    the agents page showing it disconnected with the API's reason."""
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=12.5, soc_pct=61.0)
    await scripted_agent.send(
        pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[sample]))
    )
    await wait_for(lambda: scripted_agent.first("telemetry_ack"))
    # One dispatch failed (the agent refuses it), one active.
    body = {"asset_id": "ev-1", "p_kw": -10, "duration_s": 600}
    failed = (await headend.api.post("/api/v1/dispatches", json=body)).json()["id"]
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_REJECTED, detail="local limit"))
    await wait_for(partial(dispatch_in_state, headend.api, failed, "failed"))
    body = {"asset_id": "bess-1", "p_kw": 20, "duration_s": 600}
    active = (await headend.api.post("/api/v1/dispatches", json=body)).json()["id"]
    await wait_for(lambda: len(scripted_agent.of("setpoint")) == 2)
    await apply_setpoints(scripted_agent, scripted_agent.of("setpoint")[1:])
    await wait_for(partial(dispatch_in_state, headend.api, active, "active"))
    # The agent's buffer has dropped data: its heartbeat says so.
    edge = {"dropped_batches": 3, "dropped_samples": 30, "buffered_batches": 7}
    heartbeat = pb.Heartbeat(time=now_pb(), buffered_bytes=4_500_000, **edge)
    await scripted_agent.send(pb.AgentMessage(heartbeat=heartbeat))
    viewer = await headend.token("viewer", name="console-viewer")
    base = str(headend.api.base_url).rstrip("/")
    api = headend.client(viewer)

    async def agent() -> dict[str, Any]:
        found: dict[str, Any] = (await api.get("/api/v1/agents")).json()[0]
        return found

    async def dropping() -> bool:
        return (await agent())["last_drop_at"] is not None

    async with api, async_playwright() as p:
        await wait_for(dropping, what="the heartbeat's drops are stored")
        sites = (await api.get("/api/v1/sites")).json()
        site = next(s for s in sites if s["id"] == "site-1")
        assert len(site["asset_ids"]) == 3
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for phase in ("online", "offline"):
                if phase == "offline":
                    await scripted_agent.close()
                    await wait_for(partial(agents_connected, api, False), what="agent offline")
                gw = await agent()
                for width, height in WIDTHS:
                    context = await browser.new_context(viewport={"width": width, "height": height})
                    page = await context.new_page()
                    await sign_in(page, base, viewer, width)
                    row = page.locator('#sites tbody tr[data-site="site-1"]')
                    await expect(row.locator(".assets")).to_have_text(str(len(site["asset_ids"])))
                    banner = page.locator("#offline-banner")
                    if phase == "online":
                        await expect(row.locator(".agents")).to_have_text("1 / 1")
                        await expect(banner).to_be_hidden()
                        await expect(row.locator(".active")).to_have_text("1")
                        alarm = page.locator('#alarms [data-alarm="dispatch-failed"]')
                        await expect(alarm).to_contain_text(failed)
                        dropping_alarm = page.locator('#alarms [data-alarm="edge-dropping"]')
                        await expect(dropping_alarm).to_contain_text("3 batches (30 samples)")
                        await expect(dropping_alarm.locator("a")).to_have_attribute(
                            "href", "/console/agents#agent-gw-1"
                        )
                        await fits(page, width)
                        await page.screenshot(
                            path=str(shots / f"overview-{width}.png"), full_page=True
                        )
                        await alarm.locator("a").click()
                        await expect(page).to_have_url(f"{base}/console/dispatches/{failed}")
                        await expect(page.locator("#summary")).to_contain_text("failed")
                        await page.go_back()
                        await expect(banner).to_be_hidden()
                        await page.click('header a:text-is("Agents")')
                    else:
                        await expect(row.locator(".agents")).to_have_text("0 / 1")
                        await expect(banner).to_contain_text("gw-1")
                        alarm = page.locator('#alarms [data-alarm="agent-offline"]')
                        await expect(alarm).to_contain_text(gw["last_end_reason"])
                        await fits(page, width)
                        await page.screenshot(
                            path=str(shots / f"overview-offline-{width}.png"), full_page=True
                        )
                        await banner.locator("a").click()
                    await expect(page).to_have_url(re.compile(f"^{base}/console/agents"))
                    section = page.locator('section[data-gateway="gw-1"]')
                    sessions = section.locator("table.sessions tbody tr")
                    edge_facts = section.locator("dl.edge")
                    await expect(edge_facts.locator(".buffered")).to_have_text(
                        f"4.5 MB in {gw['buffered_batches']} batches"
                    )
                    await expect(edge_facts.locator(".dropped")).to_contain_text(
                        f"{gw['dropped_batches']} batches ({gw['dropped_samples']} samples)"
                    )
                    if phase == "online":
                        await expect(section.locator(".state-cell")).to_have_text("connected")
                        await expect(section.locator(".session")).to_have_text(gw["session_id"])
                        await expect(sessions).to_have_count(1)
                    else:
                        reason = gw["last_end_reason"]
                        await expect(section.locator("h2")).to_contain_text(
                            f"disconnected ({reason})"
                        )
                        await expect(banner).to_be_visible()
                        await expect(sessions.first.locator(".reason")).to_have_text(reason)
                    await fits(page, width)
                    await page.screenshot(
                        path=str(shots / f"agents-{phase}-{width}.png"), full_page=True
                    )
                    await page.click('header a:text-is("Console")')
                    await expect(page).to_have_url(f"{base}/")
                    await expect(row.locator(".assets")).to_have_text(str(len(site["asset_ids"])))
                    await context.close()
        finally:
            await browser.close()
