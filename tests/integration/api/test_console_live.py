"""The console updates live from one event stream per tab, without polling."""

from __future__ import annotations

from pathlib import Path

import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, now_pb, wait_for
from gp_testing.browser import ARGS, WIDTHS, signed_in_page

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.e2e


async def test_a_new_sample_shows_without_reload_over_one_stream(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, tmp_path: Path, chromium: str
) -> None:
    from playwright.async_api import async_playwright, expect

    await scripted_agent.connect(demo_assets())
    viewer = await headend.token("viewer", name="console-viewer")
    base = str(headend.api.base_url).rstrip("/")
    seq = 0
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for width, height in WIDTHS:
                page = await signed_in_page(browser, base, viewer, width, height)
                streams: list[str] = []
                page.on(
                    "request",
                    lambda r, into=streams: (
                        into.append(r.url) if r.url.endswith("/api/v1/events") else None
                    ),
                )
                await page.click('#sites tbody tr[data-site="site-1"] a')
                # The stream's first event: seconds on a busy machine, not 5.
                await expect(page.locator("#updated")).to_contain_text("live", timeout=20_000)
                cell = page.locator('#assets tr[data-asset="bess-1"] .p')
                for p_kw in (41.0, 42.0):
                    seq += 1
                    sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=p_kw)
                    batch = pb.TelemetryBatch(batch_seq=seq, samples=[sample])
                    await scripted_agent.send(pb.AgentMessage(telemetry=batch))
                    await wait_for(
                        lambda n=seq: any(
                            a.batch_seq == n for a in scripted_agent.of("telemetry_ack")
                        )
                    )
                    await expect(cell).to_have_text(f"{p_kw:.1f}", timeout=15_000)
                assert len(streams) == 1, streams  # one stream for the tab, not one per update
                await page.context.close()
        finally:
            await browser.close()
